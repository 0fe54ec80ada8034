"""OpenLineage: a real ``airflow dags test`` of ``kling_lipsync_pipeline`` with Airflow's OpenLineage provider and
its file transport, against the emulator. The events are read back and must form one connected graph, from the
raw clip to the archived video; and the same DAG must run with the OpenLineage provider absent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_kling.emulator import EmulatorServer
from tests.airflow_runs import DagRunOutcome, airflow_bin, dags_test, prepare_airflow_home

DAGS = Path(__file__).parent.parent / "dags"
DAG_ID = "kling_lipsync_pipeline"


@pytest.fixture(scope="module")
def lineage_home() -> Path:
    home = prepare_airflow_home()
    shutil.copy(DAGS / f"{DAG_ID}.py", home / "dags" / f"{DAG_ID}.py")
    subprocess.run([airflow_bin(), "dags", "reserialize"], check=True, capture_output=True, timeout=300)
    return home


def run_with_lineage(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, conf: dict[str, Any]
) -> tuple[DagRunOutcome, dict[str, dict[str, Any]], str]:
    """Run the pipeline with the file transport; the last event of each task (by its job name) and the
    events' whole text."""
    events_file = tmp_path / "lineage.jsonl"
    monkeypatch.setenv(
        "AIRFLOW__OPENLINEAGE__TRANSPORT",
        json.dumps({"type": "file", "log_file_path": str(events_file), "append": True}),
    )
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__NAMESPACE", "kling-tests")
    run = dags_test(DAG_ID, conf)
    text = events_file.read_text() if events_file.exists() else ""
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    final = {}
    for event in events:
        if event.get("eventType") in ("COMPLETE", "FAIL") and event["job"]["name"].startswith(f"{DAG_ID}."):
            final[event["job"]["name"].removeprefix(f"{DAG_ID}.")] = event
    return run, final, text


def names(datasets: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(item["namespace"], item["name"]) for item in datasets}


@pytest.mark.every_line
def test_the_archived_video_traces_back_to_the_raw_clip(
    scenario_emulator: EmulatorServer, lineage_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    archive = tmp_path / "archive"
    run, tasks, text = run_with_lineage(monkeypatch, tmp_path, {"destination": str(archive)})
    assert set(run.states.values()) == {"success"}, run.output[-4000:]
    assert {"prepare", "upload_video", "upload_audio", "lipsync", "archive"} <= set(tasks), sorted(tasks)
    (job_id,) = scenario_emulator.store.jobs
    job = scenario_emulator.store.jobs[job_id]
    host = socket.gethostname()
    scenario = f"scenario://{scenario_emulator.base_url.split('://', 1)[1].split('/', 1)[0]}/default"

    prepare = tasks["prepare"]
    raw = names(prepare["inputs"])
    assert {namespace for namespace, _ in raw} == {f"file://{host}"}
    assert {Path(name).name for _, name in raw} == {"sample-face.mp4", "sample-voice.wav"}
    prepared = names(prepare["outputs"])
    assert {Path(name).name for _, name in prepared} == {"sample-face.kling.mp4", "sample-voice.kling.m4a"}

    uploads = {kind: tasks[f"upload_{kind}"] for kind in ("video", "audio")}
    assert names(uploads["video"]["inputs"]) | names(uploads["audio"]["inputs"]) == prepared
    uploaded = names(uploads["video"]["outputs"]) | names(uploads["audio"]["outputs"])
    assert uploaded == {(scenario, job.inputs["videoUrl"]), (scenario, job.inputs["audioFile"])}

    lipsync = tasks["lipsync"]
    assert names(lipsync["inputs"]) == uploaded
    (output_asset,) = names(lipsync["outputs"])
    facets = lipsync["run"]["facets"]
    assert facets["externalQuery"]["externalQueryId"] == job_id
    assert facets["scenario_job"]["modelId"] == "model_kling-lip-sync"
    assert facets["scenario_job"]["inputs"]["audioAssetId"] == job.inputs["audioFile"]
    assert facets["scenario_job"]["creativeUnitsCost"] == job.cost > 0

    archived = tasks["archive"]
    assert names(archived["inputs"]) == {output_asset}
    ((namespace, name),) = names(archived["outputs"])
    manifest = json.loads((archive / job_id / "manifest.json").read_text())
    (entry,) = manifest["files"]
    assert (namespace, name) == (f"file://{host}", entry["uri"].removeprefix("file://"))
    (output,) = archived["outputs"]
    assert output["facets"]["version"]["datasetVersion"] == entry["sha256"]
    assert output["outputFacets"]["outputStatistics"]["size"] == entry["size"]

    assert "Signature" not in text
    assert "signature=" not in text.lower()
    assert scenario_emulator.config.api_secret not in text


def test_a_failed_job_carries_its_error(
    scenario_emulator: EmulatorServer, lineage_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario_emulator.plan_jobs("failure", error="No face detected", hint="Show the face")
    run, tasks, _ = run_with_lineage(
        monkeypatch, tmp_path, {"destination": str(tmp_path / "archive"), "text": "Hello there"}
    )
    assert run.states["lipsync"] == "failed", run.output[-4000:]
    lipsync = tasks["lipsync"]
    assert lipsync["eventType"] == "FAIL"
    (job_id,) = scenario_emulator.store.jobs
    facets = lipsync["run"]["facets"]
    assert facets["externalQuery"]["externalQueryId"] == job_id
    assert "No face detected" in facets["errorMessage"]["message"]
    assert facets["scenario_job"]["inputs"]["voiceId"] == "en_AOT"
    assert facets["scenario_job"]["inputs"]["textLength"] == len("Hello there")
    assert "Hello there" not in json.dumps(facets["scenario_job"])  # its length, not the text itself


BLOCK_OPENLINEAGE = """
# As if apache-airflow-providers-openlineage and the OpenLineage client were not installed: their
# distributions are hidden from package discovery (Airflow finds providers by entry points) and their
# modules cannot be imported.
import importlib.abc
import importlib.metadata
import sys


def _hidden(name):
    return name == "openlineage" or name.startswith(("openlineage.", "airflow.providers.openlineage"))


class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if _hidden(name):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: the provider is absent)")
        return None


sys.meta_path.insert(0, _Absent())


def _hide_distributions(module):
    original = module.distributions

    def distributions(*args, **kwargs):
        for dist in original(*args, **kwargs):
            name = (dist.metadata["Name"] or "").lower().replace("_", "-")
            if not name.startswith(("apache-airflow-providers-openlineage", "openlineage-")):
                yield dist

    module.distributions = distributions


_hide_distributions(importlib.metadata)
try:
    import importlib_metadata
except ImportError:
    pass
else:
    _hide_distributions(importlib_metadata)
"""


def test_the_pipeline_runs_with_the_openlineage_provider_absent(
    scenario_emulator: EmulatorServer, lineage_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_OPENLINEAGE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")]))
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "from airflow.providers_manager import ProvidersManager\n"
            "print(sorted(ProvidersManager().providers))\n"
            "import airflow.providers.openlineage",
        ],
        capture_output=True,
        text=True,
    )
    assert "apache-airflow-providers-http" in probe.stdout  # providers are found...
    assert "openlineage" not in probe.stdout  # ...but not this one,
    assert "blocked: the provider is absent" in probe.stderr  # nor can it be imported
    run, tasks, _ = run_with_lineage(monkeypatch, tmp_path, {"destination": str(tmp_path / "archive")})
    assert set(run.states.values()) == {"success"}, run.output[-4000:]
    assert tasks == {}  # nothing emitted, nothing broken
    assert len(scenario_emulator.store.jobs) == 1
