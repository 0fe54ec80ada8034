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


def most_running_at_once(emulator: EmulatorServer) -> int:
    """The most jobs that ran at the same time, from the emulator's books (each job's creation and end)."""
    marks = []
    for job in emulator.store.jobs.values():
        marks += [(job.created_at, 1), ((job.ended_at or job.created_at + job.seconds), -1)]
    running = most = 0
    for _, step in sorted(marks):  # an end before a start at the same instant
        running += step
        most = max(most, running)
    return most


def finished(deployment: Deployment, dag_id: str, run_id: str, limit: float) -> str:
    deadline = time.monotonic() + limit
    state = "queued"
    while time.monotonic() < deadline and state not in ("success", "failed"):
        time.sleep(2)
        state = deployment.get(f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
    return str(state)


def test_a_batch_above_the_teams_limit_waits_for_slots_on_first_tries(
    deployment: Deployment, scenario_emulator: EmulatorServer, tmp_path: Path
) -> None:
    """The issue's case: 8 clips, the pool at 8, the team's limit at 2. Every lipsync meets the ceiling or
    a slot, waits in the triggerer and ends on its first try; never more than 2 jobs run, one job a clip."""
    import shutil

    source = tmp_path / "clips"
    source.mkdir()
    for number in range(8):  # compliant clips: preparing them is a copy
        shutil.copy(sample_video(), source / f"clip-{number}.mp4")
    pool = {"name": "kling_lipsync", "slots": 8, "include_deferred": True}
    made = deployment.session.post(f"{deployment.api}/api/v2/pools", json=pool, timeout=10)
    if made.status_code == 409:
        made = deployment.session.patch(f"{deployment.api}/api/v2/pools/kling_lipsync", json=pool, timeout=10)
    assert made.status_code in (200, 201), made.text
    scenario_emulator.store.config.team_job_limit = 2
    try:
        run_id = deployment.trigger(
            "kling_lipsync_batch",
            {"source": str(source), "work": str(tmp_path / "work"), "destination": str(tmp_path / "archive")},
        )
        state = finished(deployment, "kling_lipsync_batch", run_id, RUN_LIMIT * 2)
    finally:
        scenario_emulator.store.config.team_job_limit = None
    logs = deployment.logs_of("kling_lipsync_batch", limit=3000)
    assert state == "success", logs
    instances = deployment.get(f"/dags/kling_lipsync_batch/dagRuns/{run_id}/taskInstances?limit=100")
    lipsyncs = [ti for ti in instances["task_instances"] if ti["task_id"] == "clip.lipsync"]
    assert len(lipsyncs) == 8
    assert {ti["try_number"] for ti in lipsyncs} == {1}, logs  # waiting for a slot is no failure
    assert len(scenario_emulator.store.jobs) == 8  # one paid job a clip
    assert scenario_emulator.store.refused_submissions > 0  # the ceiling was really met
    assert most_running_at_once(scenario_emulator) == 2
    archived = sorted(path.name for path in (tmp_path / "archive").rglob("*.mp4"))
    assert len(archived) == 8, archived


def test_pipelines_with_jobs_of_one_to_four_seconds_end_on_first_tries(
    deployment: Deployment, scenario_emulator: EmulatorServer, tmp_path: Path
) -> None:
    """The pipeline as shipped, with jobs that end within seconds of the deferral: the trigger's first poll
    waits out the scheduler's race window, so no lipsync try is failed by it (and waits out
    ``retry_delay``)."""
    for seconds in (1.0, 2.5, 4.0):  # the next three jobs, whichever run submits first
        scenario_emulator.plan_jobs(seconds=seconds)
    runs = [
        deployment.trigger(DAG_ID, {"text": f"Run {number}", "destination": str(tmp_path / "archive")})
        for number in range(3)
    ]
    for run_id in runs:
        state = finished(deployment, DAG_ID, run_id, RUN_LIMIT)
        lipsync = deployment.task(DAG_ID, run_id, "lipsync")
        assert (state, lipsync["try_number"]) == ("success", 1), deployment.logs_of(DAG_ID)
    assert sorted(job.seconds for job in scenario_emulator.store.jobs.values()) == [1.0, 2.5, 4.0]
