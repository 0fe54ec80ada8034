"""A model's limits on video and audio files, and the checks of a probed file against them.

The limits (:class:`VideoLimits`, :class:`AudioLimits`) are given by the model's spec, such as
:data:`airflow_kling.models.kling_lipsync.KLING_LIPSYNC`. No decoding here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_kling.media.probing import MediaInfo


@dataclass(frozen=True)
class VideoLimits:
    """What a model accepts as a video file.

    :param extensions: file name endings, lower case (``.mp4``).
    :param max_bytes: the file must be smaller than this.
    :param min_seconds: length at least, in seconds; ``max_seconds`` at most.
    :param min_side: width and height each at least, in pixels as displayed (after rotation);
        ``max_side`` at most.
    """

    extensions: tuple[str, ...]
    max_bytes: int
    min_seconds: float
    max_seconds: float
    min_side: int
    max_side: int


@dataclass(frozen=True)
class AudioLimits:
    """What a model accepts as an audio file: ``extensions`` (lower case), smaller than ``max_bytes``."""

    extensions: tuple[str, ...]
    max_bytes: int


@dataclass(frozen=True)
class Violation:
    """One limit a file breaks: ``field`` and ``actual`` against ``limit``."""

    field: str
    limit: str
    actual: str

    def __str__(self) -> str:
        return f"{self.field} must be {self.limit}, got {self.actual}"


def check_video(info: MediaInfo, limits: VideoLimits) -> list[Violation]:
    """Every limit of ``limits`` that ``info`` breaks; empty when the file fits as it is."""
    violations = _check_extension(info, limits.extensions)
    if not info.has_video:
        violations.append(Violation("video stream", "present", "none"))
        return violations
    violations.extend(_check_size(info, limits.max_bytes))
    if not limits.min_seconds <= info.duration <= limits.max_seconds:
        limit = f"{limits.min_seconds:g}-{limits.max_seconds:g} s"
        violations.append(Violation("duration", limit, f"{info.duration:.2f} s"))
    for name, value in (("width", info.display_width), ("height", info.display_height)):
        if not limits.min_side <= value <= limits.max_side:
            violations.append(Violation(name, f"{limits.min_side}-{limits.max_side} px", f"{value} px"))
    return violations


def check_audio(info: MediaInfo, limits: AudioLimits) -> list[Violation]:
    """Every limit of ``limits`` that ``info`` breaks; empty when the file fits as it is."""
    violations = _check_extension(info, limits.extensions)
    if not info.has_audio:
        violations.append(Violation("audio stream", "present", "none"))
    violations.extend(_check_size(info, limits.max_bytes))
    return violations


def _check_size(info: MediaInfo, max_bytes: int) -> list[Violation]:
    if info.size_bytes < max_bytes:
        return []
    return [Violation("size", f"under {max_bytes / 1_000_000:g} MB", f"{info.size_bytes} bytes")]


def _check_extension(info: MediaInfo, allowed: tuple[str, ...]) -> list[Violation]:
    extension = PurePath(info.path).suffix.lower()
    if extension in allowed:
        return []
    return [Violation("file type", " or ".join(allowed), extension or "(none)")]
