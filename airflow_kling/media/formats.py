"""File formats the provider knows by extension: the asset kind and MIME type each becomes."""

from __future__ import annotations

import mimetypes
from pathlib import PurePath

_BY_EXTENSION: dict[str, tuple[str, str]] = {
    ".mp4": ("video", "video/mp4"),
    ".mov": ("video", "video/quicktime"),
    ".webm": ("video", "video/webm"),
    ".mkv": ("video", "video/x-matroska"),
    ".mp3": ("audio", "audio/mpeg"),
    ".wav": ("audio", "audio/wav"),
    ".m4a": ("audio", "audio/mp4"),
    ".aac": ("audio", "audio/aac"),
    ".ogg": ("audio", "audio/ogg"),
    ".flac": ("audio", "audio/flac"),
    ".png": ("image", "image/png"),
    ".jpg": ("image", "image/jpeg"),
    ".jpeg": ("image", "image/jpeg"),
    ".webp": ("image", "image/webp"),
}


ARCHIVED_TYPES = {mime: ext.lstrip(".") for ext, (_, mime) in reversed(_BY_EXTENSION.items())}
"""The media types an archive writes, each with its file extension (the first the table above gives it);
no other type is archived."""


def extension_for(mime_type: str) -> str | None:
    """The extension (without the dot) of an archived media type, or ``None`` for any other."""
    return ARCHIVED_TYPES.get(mime_type.split(";", 1)[0].strip().lower())


def content_type_for(file_name: str) -> str:
    """The MIME type of a file name; ``application/octet-stream`` when unknown."""
    known = _BY_EXTENSION.get(PurePath(file_name).suffix.lower())
    if known:
        return known[1]
    return mimetypes.guess_type(file_name)[0] or "application/octet-stream"


def kind_for(file_name: str) -> str | None:
    """The Scenario asset kind (``video``, ``audio``, ``image``) of a file name, or ``None``."""
    major = content_type_for(file_name).split("/", 1)[0]
    return major if major in ("video", "audio", "image") else None
