"""Operators: lipsync and any model, media preparation, uploads, archive, review and re-run."""
