"""The example DAGs: they load with no import error, import fast, and run end to end against the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_kling.emulator import EmulatorServer
from tests.airflow_runs import dags_test

DAGS = Path(__file__).parent.parent / "dags"
EXAMPLE_FILES = {
    "kling_lipsync_pipeline": "kling_lipsync_pipeline.py",
    "kling_lipsync_review": "kling_lipsync_pipeline.py",  # the pipeline with its review step
    "kling_lipsync_batch": "kling_lipsync_batch.py",
    "kling_lipsync_on_archive": "kling_lipsync_on_archive.py",
    "kling_lipsync_on_publish": "kling_lipsync_on_archive.py",
}
EXAMPLES = list(EXAMPLE_FILES)


@pytest.mark.every_line
def test_dagbag_loads_every_example_without_errors() -> None:
    from tests.airflow_runs import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == sorted(EXAMPLES)
    assert set(bag.dags["kling_lipsync_pipeline"].task_ids) == {
        "resolve_inputs",
        "prepare",
        "upload_video",
        "upload_audio",
        "lipsync",
        "archive",
    }
    review = bag.dags["kling_lipsync_review"]
    assert review.task_ids == [*bag.dags["kling_lipsync_pipeline"].task_ids, "review", "rerun"]
    assert review.get_task("review").upstream_task_ids == {"archive"}
    assert review.get_task("rerun").upstream_task_ids == {"review"}


HEAVY_MODULES = (
    "av",
    "aiohttp",
    "airflow_kling.hooks.scenario",
    "boto3",
    "airflow.models.dagrun",  # Airflow's database models: TriggerDagRunOperator's module loads them
)


BASELINE_DAG = """
from airflow.sdk import DAG, task

with DAG("baseline", schedule=None):

    @task
    def noop() -> None:
        pass

    noop()
"""
"""A DAG of one plain task: what the Airflow line in use imports for any DAG file (3.1's BaseOperator loads its
database models for the task's weight rule; 3.2 and 3.3's do not)."""


def heavy_modules_imported(dag_file: Path) -> set[str]:
    """The :data:`HEAVY_MODULES` that importing ``dag_file`` loads, in a fresh interpreter."""
    code = (
        "import sys, runpy; runpy.run_path(sys.argv[1]); "
        f"heavy = sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules); "
        "print('HEAVY=' + ','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(dag_file)], capture_output=True, text=True, check=True
    )
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("HEAVY=")]
    return set(filter(None, line.removeprefix("HEAVY=").split(",")))


@pytest.fixture(scope="module")
def airflows_own_heavy_modules(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    baseline = tmp_path_factory.mktemp("baseline") / "baseline.py"
    baseline.write_text(BASELINE_DAG)
    return heavy_modules_imported(baseline)


@pytest.mark.parametrize("dag_file", sorted(p.name for p in DAGS.glob("*.py")))
def test_dag_files_import_without_heavy_modules(dag_file: str, airflows_own_heavy_modules: set[str]) -> None:
    """None of :data:`HEAVY_MODULES` but those the Airflow line imports for a DAG of one plain task."""
    assert "aiohttp" not in airflows_own_heavy_modules  # the baseline leaves the provider's own to check
    assert heavy_modules_imported(DAGS / dag_file) - airflows_own_heavy_modules == set()


def test_pipeline_with_generated_samples(
    scenario_emulator: EmulatorServer, example_home: Path, tmp_path: Path
) -> None:
    run = dags_test("kling_lipsync_pipeline", {"destination": str(tmp_path)})
    assert set(run.states.values()) == {"success"}, run.output[-4000:]
    (uri,) = run.return_values["archive"]
    (job_id,) = scenario_emulator.store.jobs
    manifest = json.loads((tmp_path / job_id / "manifest.json").read_text())
    assert manifest["files"][0]["uri"] == uri
    assert Path(uri.removeprefix("file://")).stat().st_size == manifest["files"][0]["size"]
    assert "Pausing task as DEFERRED" in run.output


def test_pipeline_with_text_skips_the_audio_upload(
    scenario_emulator: EmulatorServer, example_home: Path, tmp_path: Path
) -> None:
    run = dags_test(
        "kling_lipsync_pipeline", {"destination": str(tmp_path), "text": "Hello there", "voice_speed": 1.2}
    )
    assert run.states["upload_audio"] == "skipped"
    assert run.states["lipsync"] == "success", run.output[-4000:]
    (job,) = scenario_emulator.store.jobs.values()
    assert job.inputs["text"] == "Hello there"
    assert job.inputs["voiceSpeed"] == 1.2


def test_batch_reports_each_clip(
    scenario_emulator: EmulatorServer, example_home: Path, tmp_path: Path
) -> None:
    run = dags_test("kling_lipsync_batch", {"destination": str(tmp_path)})
    assert run.states["report"] == "success", run.output[-4000:]
    assert len(scenario_emulator.store.jobs) == 3
    assert sorted(run.return_values["report"]) == ["clip-0", "clip-1", "clip-2"]
    assert all(result.startswith("archived") for result in run.return_values["report"].values())


def test_a_bad_clip_fails_alone_and_the_report_names_it(
    scenario_emulator: EmulatorServer, example_home: Path, tmp_path: Path
) -> None:
    from airflow_kling.media.samples import make_audio, make_video

    source, archive = tmp_path / "clips", tmp_path / "archive"
    for name in ("a-good", "c-good", "e-good"):
        make_video(source / f"{name}.mp4", width=1280, height=720, seconds=3, fps=25)
    make_audio(source / "a-good.wav", seconds=2)  # this clip speaks its own audio, the others the text
    (source / "b-not-a-video.mp4").write_text("this is text, not a video")
    make_video(source / "d-too-short.mp4", width=1280, height=720, seconds=0.5, fps=25)

    run = dags_test("kling_lipsync_batch", {"source": str(source), "destination": str(archive)})

    assert run.states["report"] == "failed", run.output[-4000:]
    assert run.mapped_states["clip.prepare_and_upload"] == [
        "success",
        "failed",
        "success",
        "failed",
        "success",
    ]
    assert run.mapped_states["clip.archive"] == [
        "success",
        "upstream_failed",
        "success",
        "upstream_failed",
        "success",
    ]
    jobs = list(scenario_emulator.store.jobs.values())
    assert len(jobs) == 3  # one paid job per good clip, none for the bad ones
    assert sorted("audioFile" in job.inputs for job in jobs) == [False, False, True]
    manifests = sorted(archive.glob("*/manifest.json"))
    assert {m.parent.name for m in manifests} == {job.id for job in jobs}
    for manifest in manifests:
        (entry,) = json.loads(manifest.read_text())["files"]
        assert Path(entry["uri"].removeprefix("file://")).stat().st_size == entry["size"] > 0
    failure = next(line for line in run.output.splitlines() if "2 of 5 clip(s) failed" in line)
    assert "b-not-a-video (failed at prepare_and_upload:" in failure
    assert "d-too-short (failed at prepare_and_upload:" in failure
    assert "a-good" not in failure


def test_a_batch_of_more_clips_than_airflow_maps_or_files_than_it_lists_fails_before_any_clip_is_prepared(
    scenario_emulator: EmulatorServer, example_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "clips"
    source.mkdir()
    for name in ("a", "b", "c"):
        (source / f"{name}.mp4").write_bytes(b"not prepared: the batch stops before")
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "2")
    run = dags_test("kling_lipsync_batch", {"source": str(source), "destination": str(tmp_path / "archive")})
    assert run.states["list_clips"] == "failed", run.output[-4000:]
    assert "holds 3 clips, more than the 2 one batch maps ([core] max_map_length)" in run.output
    assert scenario_emulator.store.requests() == []  # nothing uploaded, estimated or paid

    monkeypatch.delenv("AIRFLOW__CORE__MAX_MAP_LENGTH")
    for number in range(10_000 - 2):  # with the three clips, one entry more than a source is listed for
        (source / f"note-{number}.txt").touch()
    run = dags_test("kling_lipsync_batch", {"source": str(source), "destination": str(tmp_path / "archive")})
    assert run.states["list_clips"] == "failed", run.output[-4000:]
    assert "holds more than 10000 entries" in run.output
    assert scenario_emulator.store.requests() == []


def test_the_batch_is_refused_whole_above_its_budget_before_any_paid_job(
    scenario_emulator: EmulatorServer, example_home: Path, tmp_path: Path
) -> None:
    run = dags_test("kling_lipsync_batch", {"destination": str(tmp_path), "max_total_creative_units": 10})
    assert run.states["check_budget"] == "failed", run.output[-4000:]
    assert run.states["clip.lipsync"] == "upstream_failed"
    assert set(run.mapped_states.get("clip.lipsync", [])) <= {"upstream_failed"}
    assert scenario_emulator.store.jobs == {}
    estimates = scenario_emulator.store.requests("^/v1/generate/")
    assert len(estimates) == 3
    assert all("dryRun" in entry["query"] for entry in estimates)
    assert "its estimate is 90 creative units, above max_total_creative_units=10" in run.output
    assert "clip-0 (failed at check_budget:" in run.output


def test_a_clip_the_api_refuses_at_estimate_time_is_left_out_of_the_budget_not_the_batch(
    scenario_emulator: EmulatorServer, example_home: Path, tmp_path: Path
) -> None:
    scenario_emulator.add_fault(
        "^/v1/generate/", method="POST", status=400, body={"message": "videoUrl: asset not ready"}, times=1
    )
    run = dags_test("kling_lipsync_batch", {"destination": str(tmp_path), "max_total_creative_units": 70})
    assert run.states["check_budget"] == "success", run.output[-4000:]
    assert "left out of the total, the API refuses its inputs: videoUrl: asset not ready" in run.output
    assert run.return_values["check_budget"] == 60  # the two estimates the API gave (30 each)
    assert len(scenario_emulator.store.jobs) == 3  # the refusal was passing: that clip's own lipsync ran


def test_pipeline_refuses_a_destination_it_cannot_write_before_paying(
    scenario_emulator: EmulatorServer, example_home: Path
) -> None:
    run = dags_test("kling_lipsync_pipeline", {"destination": "foo://bucket/out"})
    assert run.states["resolve_inputs"] == "failed", run.output[-4000:]
    assert run.states["lipsync"] == "upstream_failed"
    assert "destination='foo://bucket/out' cannot be written to" in run.output
    assert scenario_emulator.store.requests("^/v1/generate/") == []
    assert scenario_emulator.store.requests("^/v1/uploads") == []


def test_demo_real_mode_names_both_ways_to_give_credentials() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AIRFLOW_CONN_SCENARIO_DEFAULT", "SCENARIO_SDK_API_KEY", "SCENARIO_SDK_API_SECRET")
    }
    result = subprocess.run(
        [sys.executable, str(DAGS.parent / "scripts" / "demo.py"), "--real"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode != 0
    assert (
        "AIRFLOW_CONN_SCENARIO_DEFAULT, or SCENARIO_SDK_API_KEY and SCENARIO_SDK_API_SECRET" in result.stderr
    )


@pytest.mark.every_line
@pytest.mark.parametrize("dag_id", EXAMPLES)
def test_the_trigger_form_accepts_the_defaults_and_cleared_fields(dag_id: str) -> None:
    """What the Trigger form sends: every param's default, or a text field the user touched and cleared
    (the form sends ``null``); both must pass the params' schema, or Trigger stays disabled."""
    from airflow.sdk.definitions.param import ParamsDict

    from tests.airflow_runs import DagBag

    params = DagBag(dag_folder=str(DAGS / EXAMPLE_FILES[dag_id])).dags[dag_id].params
    params.validate()  # the defaults
    optional_texts = [
        key
        for key, param in params.items()
        if isinstance(param.schema.get("type"), list) and "string" in param.schema["type"]
    ]
    for key in optional_texts:
        cleared = ParamsDict({k: p for k, p in params.items()})
        cleared[key] = None
        cleared.validate()
    if not dag_id.startswith("kling_lipsync_on_"):
        assert optional_texts  # the optional inputs are nullable, not just empty strings


def test_pipeline_checks_its_whole_conf_before_any_clip_is_prepared(
    scenario_emulator: EmulatorServer, example_home: Path, tmp_path: Path
) -> None:
    """A voice speed the form lets through (no decimal rule in its schema) fails the first task, not the
    lipsync after the clip was encoded and uploaded."""
    conf = {"destination": str(tmp_path), "text": "Hello", "voice_speed": 1.25}
    run = dags_test("kling_lipsync_pipeline", conf)
    assert run.states["resolve_inputs"] == "failed", run.output[-4000:]
    assert run.states["prepare"] == "upstream_failed"  # no media work, no upload, nothing paid
    assert "voice_speed must be from 0.8 to 2.0 with one decimal place, got 1.25" in run.output
    assert scenario_emulator.store.requests() == []


@pytest.mark.parametrize("dag_id", ["kling_lipsync_pipeline", "kling_lipsync_review"])
def test_the_trigger_form_comes_in_the_order_a_person_fills_it(dag_id: str) -> None:
    """Sections in order (media, text mode, storage and budget, review), and no field with a default marked
    required: Airflow's form marks a field required unless its schema type allows null."""
    from tests.airflow_runs import DagBag

    params = DagBag(dag_folder=str(DAGS / EXAMPLE_FILES[dag_id])).dags[dag_id].params
    specs = {name: params.get_param(name).serialize() for name in params}
    sections = list(dict.fromkeys(spec["schema"].get("section") for spec in specs.values()))
    wanted = ["Media", "Text mode", "Storage and budget", "Review"]
    assert sections == wanted[: len(sections)], sections
    assert ("Review" in sections) is (dag_id == "kling_lipsync_review")
    required = [name for name, spec in specs.items() if "null" not in spec["schema"].get("type", [])]
    assert required == [], required
