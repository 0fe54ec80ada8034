"""KlingLipsyncOperator's arguments: mapped to the wire names, refused with the field and the limit."""

from __future__ import annotations

import re
from pathlib import Path
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


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"voice_speed": 1.25}, "voice_speed must be from 0.8 to 2.0 with one decimal place, got 1.25"),
        ({"text": "x" * 130}, "text must be 1-120 characters, got 130"),
        ({"audio_asset_id": "asset_a"}, "Give exactly one of audio_asset_id"),
        (
            {"video_asset_id": "face.mov"},
            "video_asset_id must be the id of an asset .* upload the file first",
        ),
    ],
)
def test_a_literal_mistake_fails_the_dags_import_naming_the_argument(
    arguments: dict[str, Any], message: str, tmp_path: Path
) -> None:
    """Templated arguments beside it are checked once rendered; what the DAG file fixes, when it is parsed."""
    from tests.airflow_runs import DagBag

    given = {"video_asset_id": "{{ params.video }}", "text": "hello", **arguments}
    (tmp_path / "mistake.py").write_text(
        "from airflow.sdk import DAG\n"
        "from airflow_kling.operators.kling_lipsync import KlingLipsyncOperator\n"
        "with DAG('mistake', schedule=None):\n"
        f"    KlingLipsyncOperator(task_id='lipsync', **{given!r})\n"
    )
    bag = DagBag(dag_folder=str(tmp_path))
    (error,) = bag.import_errors.values()
    assert re.search(message, error), error
    assert "mistake" not in bag.dags


def test_templated_arguments_load_and_are_checked_once_rendered() -> None:
    operator = KlingLipsyncOperator(
        task_id="t", video_asset_id="{{ params.video }}", voice_speed="{{ params.s }}", text="hi"
    )
    operator.video_asset_id, operator.voice_speed = "asset_v", "1.25"  # as rendered
    with pytest.raises(ScenarioValidationError, match=r"voice_speed must be from 0\.8 to 2\.0"):
        operator.build_inputs()


def test_the_generic_operator_checks_literal_inputs_against_the_models_spec() -> None:
    from airflow_kling.operators.generate import ScenarioGenerateOperator

    with pytest.raises(
        ScenarioValidationError, match=r"videoUrl must be the id of an asset \(asset_\.\.\.\), got 'face.mov'"
    ):
        ScenarioGenerateOperator(
            task_id="t",
            model_id="model_kling-lip-sync",
            inputs={"videoUrl": "face.mov", "text": "{{ params.t }}"},
        )
    with pytest.raises(ScenarioValidationError, match="voiceSpeed must be at most 2, got 3"):
        ScenarioGenerateOperator(
            task_id="t",
            model_id="model_kling-lip-sync",
            inputs={"videoUrl": "asset_v", "text": "hi", "voiceSpeed": 3},
        )
    templated = ScenarioGenerateOperator(task_id="t", model_id="{{ params.model }}", inputs={"anything": 1})
    assert templated.inputs == {"anything": 1}  # a templated model: checked once rendered


def test_a_literal_start_of_the_media_operator_is_checked_when_the_dag_is_parsed() -> None:
    from airflow_kling.operators.media import KlingPrepareMediaOperator

    with pytest.raises(
        ScenarioValidationError, match=r"start must be a number of seconds, 0 or more, got -3"
    ):
        KlingPrepareMediaOperator(task_id="p", video="a.mp4", output_dir="out", start=-3)
    templated = KlingPrepareMediaOperator(
        task_id="p", video="a.mp4", output_dir="out", start="{{ params.s }}"
    )
    assert templated.start == "{{ params.s }}"  # checked once rendered
