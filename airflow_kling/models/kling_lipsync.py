"""Kling Lipsync (``model_kling-lip-sync``) on Scenario: everything the provider knows of it, in one spec.

Two modes: audio-driven (``videoUrl`` + ``audioFile``) or text-driven (``videoUrl`` + ``text`` with
``voiceId`` and ``voiceSpeed``). Limits (section 9 of the wire contract): the video ``.mp4`` or ``.mov``,
under 100 MB, 2-10 s, both sides 720-1920 px; the audio ``.mp3``, ``.wav``, ``.m4a`` or ``.aac``, under
5 MB; the text 1-120 characters; the voice speed 0.8-2.0 with one decimal place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow_kling.exceptions import ScenarioValidationError
from airflow_kling.media.limits import AudioLimits, VideoLimits
from airflow_kling.models.schema import ASSET_ID
from airflow_kling.models.spec import AssetLookup, FileLookup, ModelInput, ModelSpec, Output

MODEL_ID = "model_kling-lip-sync"
VIDEO_LIMITS = VideoLimits(
    extensions=(".mp4", ".mov"),
    max_bytes=100 * 1000 * 1000,
    min_seconds=2.0,
    max_seconds=10.0,
    min_side=720,
    max_side=1920,
)
AUDIO_LIMITS = AudioLimits(extensions=(".mp3", ".wav", ".m4a", ".aac"), max_bytes=5 * 1000 * 1000)
TEXT_MAX_CHARS = 120
"""Characters of ``text`` at most (text-driven lipsync)."""
DEFAULT_VOICE_ID = "en_AOT"
DEFAULT_VOICE_SPEED = 1.0
VOICE_SPEED_RANGE = (0.8, 2.0)
"""``voiceSpeed`` from, to (inclusive), with one decimal place."""
CU_PER_SECOND = 10
"""Creative units the emulator bills per started second of input video."""

PERMANENT_FAILURES: tuple[str, ...] = (
    r"\bno (visible |clear |detectable )?faces?\b",
    r"\bfaces? (was |were |is )?not (detected|found|visible)\b",
    r"\b(could not|cannot|can't|unable to|failed to) (detect|find|locate) (a |any |the )?faces?\b",
    r"\b(duration|length|resolution|width|height|file size|size|dimensions?)\b[^.;]*"
    r"\b(out of range|exceeds?|exceeded|too (long|short|large|small|big))\b",
)
"""Failures a retry with the same inputs cannot change: no face in the video, media out of the limits."""

INPUTS = (
    ModelInput(
        name="videoUrl",
        type="file",
        kind="video",
        required=True,
        max_size=VIDEO_LIMITS.max_bytes,
        min_duration=VIDEO_LIMITS.min_seconds,
        max_duration=VIDEO_LIMITS.max_seconds,
        label="Video",
        description="The video whose face speaks: .mp4 or .mov, 2-10 s, both sides 720-1920 px.",
    ),
    ModelInput(
        name="audioFile",
        type="file",
        kind="audio",
        required={"ifNotDefined": {"text": "Give an audio file or a text"}},
        max_size=AUDIO_LIMITS.max_bytes,
        label="Audio",
        description="The voice to speak: .mp3, .wav, .m4a or .aac, under 5 MB.",
    ),
    ModelInput(
        name="text",
        type="string",
        required={"ifNotDefined": {"audioFile": "Give an audio file or a text"}},
        min_length=1,
        max_length=TEXT_MAX_CHARS,
        label="Text",
        description="What the voice says, used only without audioFile.",
    ),
    ModelInput(
        name="voiceId",
        type="string",
        default=DEFAULT_VOICE_ID,
        min_length=1,
        label="Voice",
        description="A Kling voice id, used only with text.",
    ),
    ModelInput(
        name="voiceSpeed",
        type="number",
        default=DEFAULT_VOICE_SPEED,
        min=VOICE_SPEED_RANGE[0],
        max=VOICE_SPEED_RANGE[1],
        step=0.1,
        label="Voice speed",
        description="Speed of the voice, used only with text.",
    ),
)


def check_modes(inputs: Mapping[str, Any]) -> None:
    """Exactly one of ``audioFile`` and ``text``; ``voiceId`` and ``voiceSpeed`` only with ``text``.

    :raises ScenarioValidationError: naming the inputs.
    """
    has_audio = inputs.get("audioFile") not in (None, "")
    has_text = inputs.get("text") not in (None, "")
    if has_audio == has_text:
        raise ScenarioValidationError(
            "Give exactly one of audioFile (an audio asset) and text (1-120 characters)"
        )
    if has_audio:
        voice = [name for name in ("voiceId", "voiceSpeed") if inputs.get(name) not in (None, "")]
        if voice:
            raise ScenarioValidationError(
                f"{' and '.join(voice)} apply only to text; with audioFile the model speaks the audio as it is"
            )


def lineage_fields(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The voice (``voiceId``, ``voiceSpeed``) or the ``audioAssetId``, and ``textLength``.

    The text itself is not sent.
    """
    text = inputs.get("text")
    fields = {
        "voiceId": inputs.get("voiceId"),
        "voiceSpeed": inputs.get("voiceSpeed"),
        "audioAssetId": inputs.get("audioFile"),
        "textLength": len(text) if isinstance(text, str) else None,
    }
    return {key: value for key, value in fields.items() if value is not None}


def preview_rows(inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The video input, then the mode: text and voice, or the audio input."""
    rows = [("Video input", str(inputs.get("videoUrl") or "-"))]
    if inputs.get("text"):
        rows += [
            ("Mode", "text + voice"),
            ("Text", str(inputs["text"])),
            ("Voice", str(inputs.get("voiceId") or "default")),
            ("Voice speed", str(inputs.get("voiceSpeed") or "default")),
        ]
    elif inputs.get("audioFile"):
        rows += [("Mode", "audio track"), ("Audio input", str(inputs["audioFile"]))]
    return rows


def emulated_cost(inputs: Mapping[str, Any], assets: AssetLookup) -> float:
    """10 creative units per started second of the input video (5 s when its length is unknown)."""
    video = assets(str(inputs.get("videoUrl"))) or {}
    properties = video.get("properties")
    seconds = (properties.get("duration") if isinstance(properties, Mapping) else None) or 5.0
    return float(math.ceil(seconds) * CU_PER_SECOND)


def emulated_output(inputs: Mapping[str, Any], files: FileLookup, dst: Path) -> None:
    """The input picture under the audio, or under a tone as long as the text takes to say."""
    from airflow_kling.media.speech import mux_speech, speaking_seconds

    video = files(str(inputs["videoUrl"]))
    if video is None:
        raise ValueError("videoUrl has no file")
    audio = files(str(inputs.get("audioFile")))
    if audio is not None:
        mux_speech(video, dst, audio=audio)
        return
    speed = float(inputs.get("voiceSpeed", DEFAULT_VOICE_SPEED))
    mux_speech(video, dst, tone_seconds=speaking_seconds(str(inputs.get("text", "")), speed))


def kling_lipsync_inputs(
    video_asset_id: Any,
    *,
    audio_asset_id: Any = None,
    text: Any = None,
    voice_id: Any = None,
    voice_speed: Any = None,
) -> dict[str, Any]:
    """Kling Lipsync's inputs by their wire names, checked as the operator checks them.

    Built from the arguments of :class:`~airflow_kling.operators.kling_lipsync.KlingLipsyncOperator`, with the
    same rules, for code that estimates or submits on its own, such as a batch's budget.

    :raises ScenarioValidationError: naming the argument and the limit it breaks.
    """
    video = _text_value(video_asset_id)
    audio = _text_value(audio_asset_id)
    text = text if text not in (None, "") else None
    if not video:
        raise ScenarioValidationError("video_asset_id is required: the id of a video asset (asset_...)")
    check_arguments(video_asset_id=video, audio_asset_id=audio)
    if (audio is None) == (text is None):
        raise ScenarioValidationError(
            "Give exactly one of audio_asset_id (an audio asset) and text (1-120 characters)"
        )
    if audio is not None:
        given = [
            name
            for name, value in (("voice_id", voice_id), ("voice_speed", voice_speed))
            if value not in (None, "")
        ]
        if given:
            raise ScenarioValidationError(
                f"{' and '.join(given)} apply only to text; with audio_asset_id the model speaks the audio as it is"
            )
        return {"videoUrl": video, "audioFile": audio}
    if not isinstance(text, str) or not 1 <= len(text) <= TEXT_MAX_CHARS:
        length = len(text) if isinstance(text, str) else type(text).__name__
        raise ScenarioValidationError(f"text must be 1-{TEXT_MAX_CHARS} characters, got {length}")
    voice = _text_value(voice_id) or DEFAULT_VOICE_ID
    return {"videoUrl": video, "text": text, "voiceId": voice, "voiceSpeed": _voice_speed(voice_speed)}


def check_arguments(**arguments: Any) -> None:
    """Check the arguments of :func:`kling_lipsync_inputs` that are given, each on its own.

    The others are not known yet (templates a run renders); the pair ``audio_asset_id`` and ``text`` is
    checked too.

    :raises ScenarioValidationError: naming the argument and the limit it breaks.
    """
    for name in ("video_asset_id", "audio_asset_id"):
        value = _text_value(arguments.get(name))
        if value is not None and not (ASSET_ID.match(value) or value.startswith("data:")):
            raise ScenarioValidationError(
                f"{name} must be the id of an asset (asset_...), got {value[:60]!r}: upload the file first "
                "(ScenarioUploadAssetOperator, or ScenarioHook.upload_asset)"
            )
    if arguments.get("audio_asset_id") not in (None, "") and arguments.get("text") not in (None, ""):
        raise ScenarioValidationError(
            "Give exactly one of audio_asset_id (an audio asset) and text (1-120 characters)"
        )
    text = arguments.get("text")
    if isinstance(text, str) and len(text) > TEXT_MAX_CHARS:
        raise ScenarioValidationError(f"text must be 1-{TEXT_MAX_CHARS} characters, got {len(text)}")
    if "voice_speed" in arguments:
        _voice_speed(arguments["voice_speed"])


def _voice_speed(value: Any) -> float:
    if value in (None, ""):
        return DEFAULT_VOICE_SPEED
    low, high = VOICE_SPEED_RANGE
    try:
        speed = float(value)
    except (TypeError, ValueError):
        raise ScenarioValidationError(
            f"voice_speed must be a number from {low} to {high}, got {value!r}"
        ) from None
    if not low <= speed <= high or round(speed, 1) != speed:
        raise ScenarioValidationError(
            f"voice_speed must be from {low} to {high} with one decimal place, got {value!r}"
        )
    return speed


def _text_value(value: Any) -> str | None:
    return str(value).strip() or None if value not in (None, "") else None


KLING_LIPSYNC = ModelSpec(
    model_id=MODEL_ID,
    title="Kling Lipsync",
    inputs=INPUTS,
    check_inputs=check_modes,
    permanent_failures=PERMANENT_FAILURES,
    lineage_fields=lineage_fields,
    preview_rows=preview_rows,
    output=Output(kind="video", mime_type="video/mp4", extension=".mp4"),
    archive_asset="kling_lipsync_videos",
    emulated_cost=emulated_cost,
    emulated_output=emulated_output,
    media={"videoUrl": VIDEO_LIMITS, "audioFile": AUDIO_LIMITS},
)
"""The spec of Kling Lipsync."""
