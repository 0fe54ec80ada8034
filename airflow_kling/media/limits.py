"""Kling Lipsync's inputs and their limits, defined once for the operators, the media code, the DAGs and
the emulator; and the checks of a probed file against them (no decoding here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_kling.media.probing import MediaInfo

KLING_LIPSYNC_MODEL_ID = "model_kling-lip-sync"
"""The Scenario model id of Kling Lipsync."""
VIDEO_EXTENSIONS = (".mp4", ".mov")
AUDIO_EXTENSIONS = (".mp3", ".wav", ".m4a", ".aac")
VIDEO_MAX_BYTES = 100 * 1000 * 1000
"""Video files must be smaller than this (100 MB)."""
AUDIO_MAX_BYTES = 5 * 1000 * 1000
"""Audio files must be smaller than this (5 MB)."""
VIDEO_MIN_SECONDS = 2.0
VIDEO_MAX_SECONDS = 10.0
VIDEO_MIN_SIDE = 720
VIDEO_MAX_SIDE = 1920
"""Width and height, each, in pixels, as displayed (after rotation)."""
TEXT_MAX_CHARS = 120
"""Characters of ``text`` at most (text-driven lipsync)."""
DEFAULT_VOICE_ID = "en_AOT"
DEFAULT_VOICE_SPEED = 1.0
VOICE_SPEED_RANGE = (0.8, 2.0)
"""``voiceSpeed`` from, to (inclusive), with one decimal place."""


@dataclass(frozen=True)
class Violation:
    """One limit a file breaks: ``field`` and ``actual`` against ``limit``."""

    field: str
    limit: str
    actual: str

    def __str__(self) -> str:
        return f"{self.field} must be {self.limit}, got {self.actual}"


def check_video(info: MediaInfo) -> list[Violation]:
    """Every video limit ``info`` breaks; empty when the file fits Kling as it is."""
    violations = _check_extension(info, VIDEO_EXTENSIONS)
    if not info.has_video:
        violations.append(Violation("video stream", "present", "none"))
        return violations
    if info.size_bytes >= VIDEO_MAX_BYTES:
        violations.append(
            Violation("size", f"under {VIDEO_MAX_BYTES // 1_000_000} MB", f"{info.size_bytes} bytes")
        )
    if not VIDEO_MIN_SECONDS <= info.duration <= VIDEO_MAX_SECONDS:
        limit = f"{VIDEO_MIN_SECONDS:g}-{VIDEO_MAX_SECONDS:g} s"
        violations.append(Violation("duration", limit, f"{info.duration:.2f} s"))
    for name, value in (("width", info.display_width), ("height", info.display_height)):
        if not VIDEO_MIN_SIDE <= value <= VIDEO_MAX_SIDE:
            violations.append(Violation(name, f"{VIDEO_MIN_SIDE}-{VIDEO_MAX_SIDE} px", f"{value} px"))
    return violations


def check_audio(info: MediaInfo) -> list[Violation]:
    """Every audio limit ``info`` breaks; empty when the file fits Kling as it is."""
    violations = _check_extension(info, AUDIO_EXTENSIONS)
    if not info.has_audio:
        violations.append(Violation("audio stream", "present", "none"))
    if info.size_bytes >= AUDIO_MAX_BYTES:
        violations.append(
            Violation("size", f"under {AUDIO_MAX_BYTES // 1_000_000} MB", f"{info.size_bytes} bytes")
        )
    return violations


def _check_extension(info: MediaInfo, allowed: tuple[str, ...]) -> list[Violation]:
    extension = PurePath(info.path).suffix.lower()
    if extension in allowed:
        return []
    return [Violation("file type", " or ".join(allowed), extension or "(none)")]
