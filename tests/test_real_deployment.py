"""A real Airflow 3 on loopback: ``airflow standalone`` (scheduler, dag-processor, triggerer, api-server,
LocalExecutor, SQLite) with the provider installed and the emulator running. The pipeline is triggered
through the REST API and must succeed with its lipsync task deferred to the real triggerer."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_kling.emulator import EmulatorServer
from airflow_kling.hooks.scenario import ScenarioHook
from tests.deployments import RUN_LIMIT, Deployment, emulator, scenario_emulator, standalone
from tests.media_samples import sample_video, submit_text_job

DAG_ID = "kling_lipsync_pipeline"
__all__ = ["emulator", "scenario_emulator"]  # the session's emulator, its books emptied for each test


# A deployment of its own: these tests leave runs behind that would load another and write in its books (a
# worker killed mid-POST, a watcher left waiting out a stuck job). On the UI tests' worker (xdist group), so
# that two deployments never start at once on two cores.
pytestmark = [pytest.mark.every_line, pytest.mark.xdist_group("deployment")]


@pytest.fixture(scope="module")
def deployment(emulator: EmulatorServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with standalone(tmp_path_factory.mktemp("deployment"), emulator.connection_uri()) as running:
        yield running


def test_pipeline_in_a_real_airflow(
    deployment: Deployment, scenario_emulator: EmulatorServer, tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    run_id = deployment.trigger(DAG_ID, {"destination": str(archive)})
    state, seen_lipsync_states = deployment.wait_for_run(DAG_ID, run_id, "lipsync")
    instances = deployment.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
    states = {ti["task_id"]: ti["state"] for ti in instances}
    assert state == "success", f"run {state}, tasks {states}\n{deployment.logs_of(DAG_ID)}"
    assert "deferred" in seen_lipsync_states  # the real triggerer ran the trigger
    (job_id,) = scenario_emulator.store.jobs
    manifest = json.loads((archive / job_id / "manifest.json").read_text())
    video = Path(manifest["files"][0]["uri"].removeprefix("file://"))
    assert video.stat().st_size == manifest["files"][0]["size"]
    logs = deployment.logs_of(DAG_ID, limit=100_000)  # every try's task and trigger logs, as written
    assert "Trigger fired event" in logs, logs[-3000:]  # the triggerer logs the event, with its message
    assert f"Scenario job {job_id} ended with status success" in logs, logs[-3000:]
    assert f"Scenario job {job_id}: success, assets" in logs, logs[-3000:]  # and the task, as it resumes


def kill_task_process(ti_id: str) -> None:
    """SIGKILL the process that runs a task instance (the worker's task runner, titled by Airflow)."""
    import psutil

    title = f"airflow worker -- {ti_id}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for process in psutil.process_iter(["cmdline"]):
            if title in " ".join(process.info["cmdline"] or []):
                process.send_signal(signal.SIGKILL)
                return
        time.sleep(0.2)
    pytest.fail(f"no process titled {title!r}")


def test_a_worker_killed_right_after_the_post_pays_once(
    deployment: Deployment, scenario_emulator: EmulatorServer
) -> None:
    video = ScenarioHook().upload_asset(sample_video())
    # The job is created at once, but its answer would take two minutes: the worker dies waiting for it.
    scenario_emulator.add_fault("^/v1/generate/", method="POST", delay=120, after=True)
    run_id = deployment.trigger("kling_sync", {"video": video, "text": "hello there"})
    deadline = time.monotonic() + RUN_LIMIT
    while not scenario_emulator.store.jobs and time.monotonic() < deadline:
        time.sleep(0.2)
    (job_id,) = scenario_emulator.store.jobs
    kill_task_process(deployment.task("kling_sync", run_id, "lipsync")["id"])
    state, _ = deployment.wait_for_run("kling_sync", run_id, "lipsync")
    logs = deployment.logs_of("kling_sync", limit=100_000)
    assert state == "success", logs
    assert list(scenario_emulator.store.jobs) == [job_id], logs  # one paid job
    assert deployment.task("kling_sync", run_id, "lipsync")["try_number"] == 2, logs
    assert f"Adopting job {job_id}" in logs


@pytest.mark.parametrize(("dag_id", "cancelled"), [("kling_deferrable", True), ("sense_given_job", False)])
def test_marking_a_deferred_task_failed_cancels_only_the_payers_job(
    dag_id: str, cancelled: bool, deployment: Deployment, scenario_emulator: EmulatorServer
) -> None:
    hook = ScenarioHook()
    if dag_id == "sense_given_job":
        conf = {"job_id": submit_text_job(scenario_emulator, outcome="stuck")}
        task_id = "sense"
    else:
        scenario_emulator.plan_jobs("stuck")
        conf = {"video": hook.upload_asset(sample_video()), "text": "hello there"}
        task_id = "lipsync"
    run_id = deployment.trigger(dag_id, conf)
    deployment.wait_for_task(dag_id, run_id, task_id, {"deferred"})
    (job_id,) = scenario_emulator.store.jobs
    polled = len(scenario_emulator.store.requests(f"^/v1/jobs/{job_id}$"))
    deadline = time.monotonic() + 60
    while len(scenario_emulator.store.requests(f"^/v1/jobs/{job_id}$")) <= polled + 1:
        assert time.monotonic() < deadline, deployment.logs_of(dag_id)
        time.sleep(0.2)  # the triggerer runs the trigger: only a running trigger is killed
    marked = deployment.session.patch(
        f"{deployment.api}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}",
        json={"new_state": "failed"},
        timeout=10,
    )
    assert marked.status_code == 200, marked.text
    deadline = time.monotonic() + (60 if cancelled else 10)
    status = hook.get_job(job_id)["status"]
    while time.monotonic() < deadline and status != "canceled":  # a watcher's job: waited out in full
        time.sleep(0.5)
        status = hook.get_job(job_id)["status"]
    assert status == ("canceled" if cancelled else "in-progress"), deployment.logs_of(dag_id)
    cancels = scenario_emulator.store.requests("^/v1/jobs/.*/action$")
    assert len(cancels) == (1 if cancelled else 0)
