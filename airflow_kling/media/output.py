"""Write a file so that no half-written file is ever visible under its final name."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_output(dst: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``dst``.

    Rename it to ``dst`` when the block ends without error, delete it otherwise.
    """
    final = Path(dst)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(f".{final.stem}.partial-{uuid.uuid4().hex[:8]}{final.suffix}")
    try:
        yield temporary
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)


def copy_atomically(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Copy a file (no re-encoding) with :func:`atomic_output`; nothing to do when both are the same."""
    if Path(src).resolve() == Path(dst).resolve():
        return
    with atomic_output(dst) as temporary:
        shutil.copyfile(src, temporary)
