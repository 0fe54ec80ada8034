"""A still of a video for its player's ``poster``: the first picture, as a JPEG (PyAV, imported when called)."""

from __future__ import annotations

import os
from fractions import Fraction
from typing import IO

from airflow_kling.exceptions import MediaError

POSTER_WIDTH = 640
"""Pixels: wide enough for a preview pane, small enough to load at once (about 20-60 KB)."""


def poster_frame(source: str | os.PathLike[str] | IO[bytes], *, width: int = POSTER_WIDTH) -> bytes:
    """The first decoded picture of a video as JPEG bytes, scaled to ``width`` pixels.

    The aspect ratio is kept; a picture is never enlarged.

    :param source: a local path, or a seekable binary file (an object-storage file opened for reading).
    :raises MediaError: the source holds no picture that can be decoded.
    """
    import av

    try:
        with av.open(source if not isinstance(source, os.PathLike) else os.fspath(source)) as container:
            if not container.streams.video:
                raise MediaError("The file has no video stream to take a poster frame from")
            frame = next(container.decode(container.streams.video[0]), None)
    except av.FFmpegError as error:
        raise MediaError(f"No poster frame: {type(error).__name__}: {error}") from None
    if frame is None:
        raise MediaError("The video stream has no picture to take a poster frame from")
    out_width = min(width, frame.width) // 2 * 2
    out_height = max(2, round(frame.height * out_width / frame.width / 2) * 2)
    picture = frame.reformat(width=out_width, height=out_height, format="yuvj420p")
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = out_width, out_height, "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    return b"".join(bytes(packet) for packet in [*encoder.encode(picture), *encoder.encode(None)])
