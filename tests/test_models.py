"""Model specs: the descriptor's rules, the registry, Kling written in its spec only, and the live schema
checked before anything is paid (against the emulator, counted in its books)."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from airflow_kling.emulator import EmulatorServer
from airflow_kling.exceptions import ScenarioConfigError, ScenarioValidationError
from airflow_kling.hooks.scenario import ScenarioHook
from airflow_kling.models import known_specs, model_spec
from airflow_kling.models.kling_lipsync import KLING_LIPSYNC
from airflow_kling.models.schema import check_inputs, descriptor_inputs, input_problems
from tests.airflow_runs import dags_test
from tests.media_samples import sample_video, write_png
from tests.upscaler_model import MAX_IMAGE_BYTES, UPSCALER

PACKAGE = Path(__file__).parent.parent / "airflow_kling"
KLING = KLING_LIPSYNC.model_id
DESCRIBED: list[dict[str, Any]] = [
    {"name": "image", "type": "file", "kind": "image", "required": {"always": True}, "maxSize": 100},
    {"name": "clip", "type": "file", "kind": "video", "minDuration": 2, "maxDuration": 10},
    {"name": "scale", "type": "number", "min": 2, "max": 4, "step": 1},
    {"name": "voice", "type": "string", "allowedValues": ["en_AOT", "en_Calm"]},
    {"name": "text", "type": "string", "minLength": 1, "maxLength": 5},
    {"name": "audio", "type": "file", "required": {"ifNotDefined": {"text": "audio or text"}}},
    {"name": "mask", "type": "file", "required": {"ifDefined": {"scale": "a scale needs a mask"}}},
    {"name": "tags", "type": "string_array", "maxLength": 2},
]
ASSETS = {
    "asset_img": {"kind": "image", "properties": {"size": 50}},
    "asset_big": {"kind": "image", "properties": {"size": 150}},
    "asset_long": {"kind": "video", "properties": {"size": 10, "duration": 12.5}},
    "asset_short": {"kind": "video", "properties": {"size": 10, "duration": 1.0}},
}


def problems(**inputs: Any) -> list[str]:
    return input_problems(DESCRIBED, {"image": "asset_img", "text": "hi", **inputs}, ASSETS.get)


def test_inputs_within_the_descriptor_pass() -> None:
    assert problems() == []
    assert problems(scale=3, mask="asset_img", voice="en_Calm", clip="asset_img" * 0 or None) == []


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({"image": None}, "image is required"),
        ({"text": None}, "audio is required when text is not given"),
        ({"scale": 2}, "mask is required when scale is given"),
        ({"scale": 5, "mask": "asset_img"}, "scale must be at most 4, got 5"),
        ({"scale": 2.5, "mask": "asset_img"}, "scale must be a multiple of 1 from 2, got 2.5"),
        ({"scale": True, "mask": "asset_img"}, "scale must be a number, got True"),
        ({"voice": "xx_Nope"}, "voice must be one of 'en_AOT', 'en_Calm', got 'xx_Nope'"),
        ({"text": "too long"}, "text must have at most 5 characters, got 8"),
        ({"tags": ["a", "b", "c"]}, "tags must have at most 2 items, got 3"),
        ({"image": "asset_big"}, "image must be at most 100 bytes, asset_big is 150 bytes"),
        ({"image": "asset_long"}, "image must be an asset of kind image, asset_long is of kind 'video'"),
        ({"clip": "asset_long"}, "clip must last at most 10 s, asset_long lasts 12.50 s"),
        ({"clip": "asset_short"}, "clip must last at least 2 s, asset_short lasts 1.00 s"),
        ({"image": "asset_gone"}, "image: no asset asset_gone"),
        (
            {"image": "face.mov"},
            "image must be the id of an asset (asset_...), got 'face.mov': upload a file",
        ),
        ({"imagee": "asset_img"}, "'imagee': no such input of this model"),
    ],
)
def test_each_rule_names_the_input_and_its_limit(inputs: dict[str, Any], expected: str) -> None:
    found = problems(**inputs)
    assert any(expected in problem for problem in found), found


def test_a_data_url_is_not_looked_up() -> None:
    assert problems(image="data:image/png;base64,AAAA") == []


def test_a_hostile_descriptor_is_read_as_far_as_it_is_well_formed() -> None:
    assert descriptor_inputs({"inputs": "all of them"}) == []
    assert descriptor_inputs([1, 2]) == []
    hostile = descriptor_inputs(
        {"inputs": [7, {"name": 3}, {"name": "scale", "type": "number", "min": "two", "max": [4]}] * 100}
    )
    assert len(hostile) == 66  # the first 200 entries only, and of those the ones with a name
    assert input_problems(hostile, {"scale": 9}) == []  # limits of the wrong type are not limits
    huge = descriptor_inputs(
        {"inputs": [{"name": "scale", "type": "number", "min": -(10**400), "max": 10**400}]}
    )
    # No float holds them: they are not limits (reading them raised OverflowError).
    assert input_problems(huge, {"scale": 9}) == []
    (problem,) = input_problems(DESCRIBED[2:3], {"scale": 10**400})
    assert problem.startswith("scale must be a number, got 1000")  # a value no float holds
    assert len(problem) < 200  # said shortened


def test_the_error_says_where_the_limits_come_from() -> None:
    with pytest.raises(ScenarioValidationError, match=r"^Inputs refused by the live schema of m: scale must"):
        check_inputs(
            DESCRIBED, {"image": "asset_img", "text": "hi", "scale": 9}, source="the live schema of m"
        )


def test_the_registry_knows_kling_and_the_specs_it_is_told_of(monkeypatch: pytest.MonkeyPatch) -> None:
    specs = known_specs()
    assert specs[KLING] is KLING_LIPSYNC
    assert specs[UPSCALER.model_id] is UPSCALER  # named in AIRFLOW__KLING__MODEL_SPECS by the suite
    assert model_spec("model_unknown").title == "model_unknown"  # generic: no local checks
    assert model_spec("model_unknown").inputs == ()
    monkeypatch.setenv("AIRFLOW__KLING__MODEL_SPECS", "tests.upscaler_model:NOT_THERE")
    with pytest.raises(ScenarioConfigError, match=r"tests.upscaler_model:NOT_THERE"):
        known_specs()


KLING_WORDS = ("model_kling-lip-sync", "videoUrl", "audioFile", "voiceId", "voiceSpeed", "en_AOT")


def code_strings(path: Path) -> list[str]:
    """Every string constant of a module but its docstrings (any string standing alone as a statement)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_kling_is_written_in_its_spec_only() -> None:
    """Kling's model id, input names, default voice and refusal patterns: in no code but its spec's."""
    spec_file = PACKAGE / "models" / "kling_lipsync.py"
    elsewhere = {
        f"{path.relative_to(PACKAGE)}: {text!r}"
        for path in PACKAGE.rglob("*.py")
        if path != spec_file
        for text in code_strings(path)
        if any(word in text for word in KLING_WORDS) or "faces?" in text
    }
    assert elsewhere == set()
    assert {word for word in KLING_WORDS if any(word in text for text in code_strings(spec_file))} == set(
        KLING_WORDS
    )


# -- against the emulator ------------------------------------------------------------------------------------


def test_the_emulator_serves_each_specs_descriptor(scenario_emulator: EmulatorServer) -> None:
    hook = ScenarioHook()
    kling = hook.get_model(KLING)
    assert [item["name"] for item in kling["inputs"]] == [
        "videoUrl",
        "audioFile",
        "text",
        "voiceId",
        "voiceSpeed",
    ]
    speed = next(item for item in kling["inputs"] if item["name"] == "voiceSpeed")
    assert (speed["min"], speed["max"], speed["step"]) == (0.8, 2.0, 0.1)
    upscaler = hook.get_model(UPSCALER.model_id)
    assert upscaler["inputs"][0] == {
        "name": "image",
        "type": "file",
        "kind": "image",
        "required": {"always": True},
        "maxSize": MAX_IMAGE_BYTES,
    }
    scenario_emulator.describe_model(KLING, voiceId={"allowedValues": ["en_AOT"]})
    voice = next(item for item in hook.get_model(KLING)["inputs"] if item["name"] == "voiceId")
    assert voice["allowedValues"] == ["en_AOT"]


def test_the_emulator_validates_a_spec_it_was_told_of(
    scenario_emulator: EmulatorServer, tmp_path: Path
) -> None:
    from airflow_kling.exceptions import ScenarioAPIError

    hook = ScenarioHook()
    image = hook.upload_asset(write_png(tmp_path / "small.png"), kind="image")
    with pytest.raises(ScenarioAPIError, match="scale must be at most 4, got 8") as refused:
        hook.run_model(UPSCALER.model_id, {"image": image, "scale": 8})
    assert refused.value.status == 400
    answer = hook.run_model(UPSCALER.model_id, {"image": image, "scale": 3})
    assert answer["creativeUnitsCost"] == 9  # the spec's price: 3 per step of scale
    assert scenario_emulator.store.paid_submissions()[-1]["status"] == 200


def test_the_descriptor_is_asked_once_per_process_until_it_expires(scenario_emulator: EmulatorServer) -> None:
    now = [1000.0]
    hook = ScenarioHook()
    first = hook.model_descriptor(KLING, clock=lambda: now[0])
    again = ScenarioHook().model_descriptor(KLING, clock=lambda: now[0])
    assert first == again
    assert first is not None
    assert len(scenario_emulator.store.requests(f"^/v1/models/{KLING}$")) == 1
    now[0] += 601  # past DESCRIPTOR_TTL
    hook.model_descriptor(KLING, clock=lambda: now[0])
    assert len(scenario_emulator.store.requests(f"^/v1/models/{KLING}$")) == 2


def test_a_private_models_404_is_no_descriptor(scenario_emulator: EmulatorServer) -> None:
    now = [5000.0]
    assert ScenarioHook().model_descriptor("model_private", clock=lambda: now[0]) is None
    assert ScenarioHook().model_descriptor("model_private", clock=lambda: now[0]) is None
    assert len(scenario_emulator.store.requests("^/v1/models/model_private$")) == 1  # not asked again at once


# -- in DAG runs: nothing is paid for inputs the live schema refuses ------------------------------------------


@pytest.fixture
def video(scenario_emulator: EmulatorServer, airflow_home: Path) -> str:
    return ScenarioHook().upload_asset(sample_video())


def run_generate(model_id: str, inputs: dict[str, Any]) -> Any:
    return dags_test("generate_sync", {"model_id": model_id, "inputs": inputs})


@pytest.mark.parametrize(
    ("describe", "inputs", "expected"),
    [
        (
            {"voiceSpeed": {"max": 1.5}},
            {"text": "hi", "voiceSpeed": 1.8},
            "voiceSpeed must be at most 1.5, got 1.8",
        ),
        (
            {"voiceId": {"allowedValues": ["en_AOT", "en_Calm"]}},
            {"text": "hi", "voiceId": "xx_Nope"},
            "voiceId must be one of 'en_AOT', 'en_Calm', got 'xx_Nope'",
        ),
        ({"videoUrl": {"maxDuration": 2.5}}, {"text": "hi"}, "videoUrl must last at most 2.5 s"),
        ({"videoUrl": {"maxSize": 1000}}, {"text": "hi"}, "videoUrl must be at most 1000 bytes"),
        ({"voiceId": {"required": {"always": True}}}, {"text": "hi"}, "voiceId is required"),
    ],
)
def test_the_live_schema_refuses_before_anything_is_paid(
    scenario_emulator: EmulatorServer,
    video: str,
    describe: dict[str, Any],
    inputs: dict[str, Any],
    expected: str,
) -> None:
    scenario_emulator.describe_model(KLING, **describe)
    run = run_generate(KLING, {"videoUrl": video, **inputs})
    assert run.states == {"generate": "failed"}
    assert run.tries["generate"] == 1  # at once, whatever the retries
    assert f"Inputs refused by the live schema of {KLING}" in run.output
    assert expected in run.output, run.output[-3000:]
    assert scenario_emulator.store.paid_submissions() == []
    assert len(scenario_emulator.store.requests(f"^/v1/models/{KLING}$")) == 1


def test_a_missing_input_required_only_without_another(
    scenario_emulator: EmulatorServer, airflow_home: Path, tmp_path: Path
) -> None:
    image = ScenarioHook().upload_asset(write_png(tmp_path / "in.png"), kind="image")
    scenario_emulator.describe_model(UPSCALER.model_id, style={"required": {"ifNotDefined": {"scale": "x"}}})
    run = run_generate(UPSCALER.model_id, {"image": image})
    assert run.states == {"generate": "failed"}
    assert "style is required when scale is not given" in run.output
    assert scenario_emulator.store.paid_submissions() == []


@pytest.mark.parametrize("status", [404, 503])
def test_without_a_descriptor_the_specs_checks_stand_alone(
    status: int, scenario_emulator: EmulatorServer, video: str
) -> None:
    scenario_emulator.add_fault(f"^/v1/models/{KLING}$", status=status, times=10)
    run = run_generate(KLING, {"videoUrl": video, "text": "hello there"})
    assert run.states == {"generate": "success"}, run.output[-3000:]
    assert f"The live descriptor of model {KLING} could not be had" in run.output
    assert len(scenario_emulator.store.paid_submissions()) == 1
    refused = run_generate(KLING, {"videoUrl": video, "text": "hi", "voiceSpeed": 2.5})
    assert refused.states == {"generate": "failed"}
    assert f"Inputs refused by the spec of {KLING}: voiceSpeed must be at most 2, got 2.5" in refused.output
    assert len(scenario_emulator.store.paid_submissions()) == 1


# -- the second model, end to end ---------------------------------------------------------------------------


def test_a_model_of_one_file_runs_through_the_generic_operator_the_archive_and_lineage(
    scenario_emulator: EmulatorServer,
    airflow_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events_file = tmp_path / "lineage.jsonl"
    monkeypatch.setenv(
        "AIRFLOW__OPENLINEAGE__TRANSPORT",
        json.dumps({"type": "file", "log_file_path": str(events_file), "append": True}),
    )
    source = write_png(tmp_path / "photo.png")
    image = ScenarioHook().upload_asset(source, kind="image")
    archive = tmp_path / "archive"
    run = dags_test("upscale_and_archive", {"image": image, "scale": 3, "destination": str(archive)})
    assert run.states == {"upscale": "success", "archive": "success"}, run.output[-3000:]
    (job,) = scenario_emulator.store.jobs.values()
    assert (job.model_id, job.inputs, job.cost) == (UPSCALER.model_id, {"image": image, "scale": 3}, 9)
    assert run.xcom("upscale", "scenario_model_id") == UPSCALER.model_id

    manifest = json.loads((archive / job.id / "manifest.json").read_text())
    assert manifest["model_id"] == UPSCALER.model_id
    assert manifest["inputs"] == {"image": image, "scale": 3}
    (archived,) = manifest["files"]
    assert archived["mime_type"] == "image/png"
    assert archived["uri"].endswith(".png")
    assert (
        Path(archived["uri"].removeprefix("file://")).read_bytes() == source.read_bytes()
    )  # the emulator's copy

    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    (upscale,) = [
        event
        for event in events
        if event["eventType"] == "COMPLETE" and event["job"]["name"] == "upscale_and_archive.upscale"
    ]
    facet = upscale["run"]["facets"]["scenario_job"]
    assert (facet["modelId"], facet["inputs"]) == (UPSCALER.model_id, {"imageAssetId": image, "scale": 3})
