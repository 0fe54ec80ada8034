"""HTTP ``Range`` requests (RFC 9110, one range).

So that a ``<video>`` element can seek in a video it streams instead of downloading it whole first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

CHUNK = 256 * 1024
"""Bytes read and sent at a time."""

# At most 18 digits a side (any file's size fits): a longer number is not a range this server honours, and
# Python would refuse to read one of thousands of digits as an int.
_RANGE = re.compile(r"^bytes=(\d{0,18})-(\d{0,18})$")


class UnsatisfiableRange(ValueError):
    """The ``Range`` asked for lies outside the file: answered with HTTP 416."""


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``start`` to ``end`` of a file of ``size`` bytes, both ends included."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        """Bytes in the range."""
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        """The range as a ``Content-Range`` header's value."""
        return f"bytes {self.start}-{self.end}/{self.size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The range a ``Range`` header asks for in a file of ``size`` bytes.

    ``None`` for the whole file (no header, or one this server does not honour: several ranges or another
    unit, which RFC 9110 lets a server answer with the whole file; also a number of more than 18 digits).

    :raises UnsatisfiableRange: the range starts past the end of the file, or the file is empty.
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        if int(last) == 0 or size == 0:
            raise UnsatisfiableRange(header)
        return ByteRange(max(size - int(last), 0), size - 1, size)
    start = int(first)
    if start >= size:
        raise UnsatisfiableRange(header)
    end = min(int(last), size - 1) if last else size - 1
    if end < start:
        return None
    return ByteRange(start, end, size)


def read_range(source: IO[bytes], start: int, length: int) -> Iterator[bytes]:
    """``length`` bytes of a seekable binary file from ``start``, in chunks of at most :data:`CHUNK`.

    The file is closed when the iterator ends or is closed.
    """
    with source:
        source.seek(start)
        remaining = length
        while remaining > 0:
            chunk = source.read(min(CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk
