"""Media handling: formats, Kling's limits and (with PyAV) probing and preparing clips.

Importing this package is cheap; PyAV is imported only by the functions that decode or encode.
"""
