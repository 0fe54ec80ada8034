"""KlingLipsyncOperator's arguments: mapped to the wire names, refused with the field and the limit."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_kling.exceptions import ScenarioValidationError
from airflow_kling.operators.kling_lipsync import KlingLipsyncOperator


def inputs_of(**arguments: Any) -> dict[str, Any]:
    return KlingLipsyncOperator(task_id="t", **arguments).build_inputs()


def test_audio_mode() -> None:
    assert inputs_of(video_asset_id="asset_v", audio_asset_id="asset_a") == {
        "videoUrl": "asset_v",
        "audioFile": "asset_a",
    }


def test_text_mode_with_defaults_and_rendered_strings() -> None:
    assert inputs_of(video_asset_id="asset_v", text="Hello") == {
        "videoUrl": "asset_v",
        "text": "Hello",
        "voiceId": "en_AOT",
        "voiceSpeed": 1.0,
    }
    assert (
        inputs_of(video_asset_id="asset_v", text="Hi", voice_id="zh_x", voice_speed="1.5")["voiceSpeed"]
        == 1.5
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"video_asset_id": ""}, "video_asset_id is required"),
        ({"video_asset_id": "asset_v"}, "exactly one of audio_asset_id"),
        (
            {"video_asset_id": "asset_v", "audio_asset_id": "asset_a", "text": "hi"},
            "exactly one of audio_asset_id",
        ),
        ({"video_asset_id": "asset_v", "text": "x" * 121}, "text must be 1-120 characters, got 121"),
        (
            {"video_asset_id": "asset_v", "text": "hi", "voice_speed": 2.5},
            "voice_speed must be from 0.8 to 2.0",
        ),
        (
            {"video_asset_id": "asset_v", "text": "hi", "voice_speed": 0.7},
            "voice_speed must be from 0.8 to 2.0",
        ),
        ({"video_asset_id": "asset_v", "text": "hi", "voice_speed": 1.25}, "one decimal place"),
        ({"video_asset_id": "asset_v", "text": "hi", "voice_speed": "fast"}, "voice_speed must be a number"),
        (
            {"video_asset_id": "asset_v", "audio_asset_id": "asset_a", "voice_id": "en_AOT"},
            "voice_id apply only to text",
        ),
        (
            {"video_asset_id": "asset_v", "audio_asset_id": "asset_a", "voice_id": "x", "voice_speed": 1.2},
            "voice_id and voice_speed apply only to text",
        ),
    ],
)
def test_bad_arguments_name_the_field_and_the_limit(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioValidationError, match=message):
        inputs_of(**arguments)


def test_every_argument_is_templated() -> None:
    assert {"video_asset_id", "audio_asset_id", "text", "voice_id", "voice_speed"} <= set(
        KlingLipsyncOperator.template_fields
    )
