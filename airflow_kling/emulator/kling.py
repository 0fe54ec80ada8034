"""What the emulator knows of ``model_kling-lip-sync``: its inputs, limits and price."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

from airflow_kling.media.limits import (
    AUDIO_EXTENSIONS,
    AUDIO_MAX_BYTES,
    KLING_LIPSYNC_MODEL_ID,
    TEXT_MAX_CHARS,
    VIDEO_EXTENSIONS,
    VIDEO_MAX_BYTES,
    VIDEO_MAX_SECONDS,
    VIDEO_MAX_SIDE,
    VIDEO_MIN_SECONDS,
    VIDEO_MIN_SIDE,
    VOICE_SPEED_RANGE,
)

INPUT_NAMES = frozenset({"videoUrl", "audioFile", "text", "voiceId", "voiceSpeed"})
CU_PER_SECOND = 10
"""Creative units the emulator bills per started second of input video."""


class InputError(Exception):
    """An input the real API would refuse with HTTP 400; the message names the input."""


def validate_inputs(inputs: Any, find_asset: Callable[[str], dict[str, Any] | None]) -> None:
    """Check a generation body the way the API does for this model.

    :param find_asset: asset id -> ``{"kind", "properties"}`` of an existing asset, or ``None``.
    :raises InputError: with the first problem found.
    """
    if not isinstance(inputs, dict):
        raise InputError("The request body must be a JSON object of the model's inputs")
    unknown = sorted(set(inputs) - INPUT_NAMES)
    if unknown:
        raise InputError(f"Unknown input(s) for {KLING_LIPSYNC_MODEL_ID}: {', '.join(unknown)}")
    video = _asset_input(inputs, "videoUrl", "video", find_asset, required=True)
    if video is not None:
        _check_extension("videoUrl", video, VIDEO_EXTENSIONS)
        _check_video(video["properties"])
    has_audio = inputs.get("audioFile") not in (None, "")
    has_text = inputs.get("text") not in (None, "")
    if has_audio == has_text:
        raise InputError("Exactly one of 'audioFile' and 'text' is required")
    if has_audio:
        audio = _asset_input(inputs, "audioFile", "audio", find_asset, required=True)
        if audio is not None:
            _check_extension("audioFile", audio, AUDIO_EXTENSIONS)
            if audio["properties"].get("size", 0) >= AUDIO_MAX_BYTES:
                raise InputError(f"'audioFile' must be smaller than {AUDIO_MAX_BYTES} bytes")
        return
    text = inputs["text"]
    if not isinstance(text, str) or not 1 <= len(text) <= TEXT_MAX_CHARS:
        raise InputError(f"'text' must be a string of 1 to {TEXT_MAX_CHARS} characters")
    if "voiceId" in inputs and not (isinstance(inputs["voiceId"], str) and inputs["voiceId"]):
        raise InputError("'voiceId' must be a non-empty string")
    if "voiceSpeed" in inputs:
        speed = inputs["voiceSpeed"]
        low, high = VOICE_SPEED_RANGE
        if isinstance(speed, bool) or not isinstance(speed, int | float) or not low <= speed <= high:
            raise InputError(f"'voiceSpeed' must be a number from {low} to {high}")
        if round(speed, 1) != speed:
            raise InputError("'voiceSpeed' takes one decimal place at most")


def _asset_input(
    inputs: dict[str, Any],
    name: str,
    kind: str,
    find_asset: Callable[[str], dict[str, Any] | None],
    *,
    required: bool,
) -> dict[str, Any] | None:
    value = inputs.get(name)
    if value in (None, ""):
        if required:
            raise InputError(f"'{name}' is required")
        return None
    if not isinstance(value, str):
        raise InputError(f"'{name}' must be an asset id")
    asset = find_asset(value)
    if asset is None:
        raise InputError(f"'{name}': asset {value} not found")
    if asset["kind"] != kind:
        raise InputError(f"'{name}' must be a {kind} asset, {value} is {asset['kind']}")
    return asset


def _check_extension(name: str, asset: dict[str, Any], allowed: tuple[str, ...]) -> None:
    extension = PurePath(str(asset.get("file_name", ""))).suffix.lower()
    if extension not in allowed:
        raise InputError(f"'{name}' must be a {' or '.join(allowed)} file, got {extension or 'no extension'}")


def _check_video(properties: dict[str, Any]) -> None:
    size = properties.get("size", 0)
    if size >= VIDEO_MAX_BYTES:
        raise InputError(f"'videoUrl' must be smaller than {VIDEO_MAX_BYTES} bytes, got {size}")
    duration = properties.get("duration")
    if duration is not None and not VIDEO_MIN_SECONDS <= duration <= VIDEO_MAX_SECONDS:
        raise InputError(
            f"'videoUrl' must last {VIDEO_MIN_SECONDS:g} to {VIDEO_MAX_SECONDS:g} s, got {duration:.2f} s"
        )
    for side in ("width", "height"):
        value = properties.get(side)
        if value is not None and not VIDEO_MIN_SIDE <= value <= VIDEO_MAX_SIDE:
            raise InputError(f"'videoUrl' {side} must be {VIDEO_MIN_SIDE}-{VIDEO_MAX_SIDE} px, got {value}")


def estimate_cost(inputs: dict[str, Any], find_asset: Callable[[str], dict[str, Any] | None]) -> int:
    """Creative units for a valid request: per started second of the input video (5 s when unknown)."""
    video = find_asset(str(inputs.get("videoUrl"))) or {"properties": {}}
    seconds = video["properties"].get("duration") or 5.0
    return math.ceil(seconds) * CU_PER_SECOND
