"""ScenarioJobTrigger.run() against the emulator: every ending, passing errors, the deadline, on_kill."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from airflow_kling.emulator import EmulatorServer
from airflow_kling.hooks.scenario import ScenarioHook
from airflow_kling.hooks.scenario_async import close_shared_session
from airflow_kling.triggers.job import ScenarioJobTrigger
from tests.connections import use_connection
from tests.media_samples import submit_text_job

# On every line: the trigger's on_kill reads its task's state differently on each line.
pytestmark = pytest.mark.every_line


def events_of(trigger: ScenarioJobTrigger) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        try:
            return [event.payload async for event in trigger.run()]
        finally:
            await close_shared_session()

    return asyncio.run(collect())


def test_success_of_a_short_job_says_each_status_it_went_through(
    scenario_emulator: EmulatorServer, captured_logs: Callable[[], str]
) -> None:
    job_id = submit_text_job(scenario_emulator)
    (event,) = events_of(ScenarioJobTrigger(job_id, poll_interval=0.1))
    assert (event["status"], event["job_id"]) == ("success", job_id)
    assert event["job"]["metadata"]["assetIds"]
    assert event["message"] == f"Scenario job {job_id} ended with status success"
    # What the task needs of the job, not its history: Airflow logs the whole event on one line.
    answered = ScenarioHook().get_job(job_id)
    assert {"statusHistory", "input"} <= set(answered) | set(answered["metadata"]), answered
    assert set(event["job"]) == {
        "jobId",
        "status",
        "progress",
        "createdAt",
        "updatedAt",
        "metadata",
        "billing",
    }
    assert event["job"]["billing"] == {"cuCost": answered["billing"]["cuCost"]}
    assert len(json.dumps(event)) < 600, event  # a few hundred characters: 404 for this one
    # A line costs a triggerer more than a poll: a job shorter than a line's interval (30 s) gets none from
    # the trigger; the event carries each status it went through, with its time, for the woken task to say.
    assert not [line for line in captured_logs().splitlines() if f"Scenario job {job_id}: " in line]
    statuses = [step for step in answered["statusHistory"] if step["status"] != "success"]
    assert len(statuses) >= 3, answered  # queued, warming-up, in-progress, finalizing
    assert event["statuses"] == [f"{step['status']} at {step['date'][11:19]}" for step in statuses]
    assert {r["method"] for r in scenario_emulator.store.requests("^/v1/jobs/")} == {"GET"}


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        ("failure", "ended with status failure: No face detected Hint: Show the face"),
        ("canceled", "ended with status canceled"),
    ],
)
def test_failure_and_canceled(scenario_emulator: EmulatorServer, outcome: str, expected: str) -> None:
    job_id = submit_text_job(
        scenario_emulator, outcome=outcome, error="No face detected", hint="Show the face", seconds=0.3
    )
    (event,) = events_of(ScenarioJobTrigger(job_id, poll_interval=0.1))
    assert event["status"] == outcome
    assert expected in event["message"]


def cancel_requests(emulator: EmulatorServer) -> list[dict[str, Any]]:
    return emulator.store.requests("^/v1/jobs/.*/action$")


def test_stuck_job_times_out_and_is_cancelled_by_its_owner(scenario_emulator: EmulatorServer) -> None:
    job_id = submit_text_job(scenario_emulator, outcome="stuck")
    started = time.time()
    trigger = ScenarioJobTrigger(job_id, poll_interval=0.2, timeout_at=started + 1.0, cancel_on_exit=True)
    (event,) = events_of(trigger)
    assert event["status"] == "timeout"
    assert "did not finish before its deadline; it was cancelled" in event["message"]
    assert time.time() - started >= 1.0
    assert ScenarioHook().get_job(job_id)["status"] == "canceled"


def test_a_watcher_that_times_out_leaves_the_job_running(scenario_emulator: EmulatorServer) -> None:
    job_id = submit_text_job(scenario_emulator, outcome="stuck")
    (event,) = events_of(ScenarioJobTrigger(job_id, poll_interval=0.2, timeout_at=time.time() + 0.5))
    assert event["status"] == "timeout"
    assert "left running" in event["message"]
    assert cancel_requests(scenario_emulator) == []
    assert ScenarioHook().get_job(job_id)["status"] == "in-progress"


def test_a_refused_cancel_still_ends_with_timeout(scenario_emulator: EmulatorServer) -> None:
    job_id = submit_text_job(scenario_emulator, outcome="stuck")
    scenario_emulator.add_fault(
        "/action$", status=400, body={"message": "Only inference jobs can be canceled"}
    )
    trigger = ScenarioJobTrigger(job_id, poll_interval=0.2, timeout_at=time.time() + 0.5, cancel_on_exit=True)
    (event,) = events_of(trigger)
    assert event["status"] == "timeout"
    assert "cancelling it was refused or failed" in event["message"]


def test_error_bursts_mid_poll_do_not_end_the_trigger(
    monkeypatch: pytest.MonkeyPatch, scenario_emulator: EmulatorServer, captured_logs: Callable[[], str]
) -> None:
    use_connection(monkeypatch, scenario_emulator, max_retries=1)
    job_id = submit_text_job(scenario_emulator, seconds=2.0)
    scenario_emulator.add_fault("^/v1/jobs/job_", status=503, headers={"retry-after-ms": "20"}, times=4)
    scenario_emulator.add_fault("^/v1/jobs/job_", status=429, headers={"retry-after-ms": "20"}, times=4)
    scenario_emulator.add_fault("^/v1/jobs/job_", action="drop", times=2)
    (event,) = events_of(ScenarioJobTrigger(job_id, poll_interval=0.1))
    assert event["status"] == "success"
    statuses = [r["status"] for r in scenario_emulator.store.requests("^/v1/jobs/job_")]
    assert statuses.count(503) == 4
    assert statuses.count(429) == 4
    assert "Polling job" in captured_logs()


def test_final_errors_end_it_with_an_error_event(scenario_emulator: EmulatorServer) -> None:
    (event,) = events_of(ScenarioJobTrigger("job_unknown", poll_interval=0.1))
    assert event["status"] == "error"
    assert "HTTP 404" in event["message"]
    assert event["job"] is None


def kill_while_running(trigger: ScenarioJobTrigger) -> None:
    async def kill() -> None:
        task = asyncio.ensure_future(trigger.run().__anext__())
        await asyncio.sleep(0.5)
        assert not task.done()  # still waiting: the job is running
        task.cancel()
        await trigger.on_kill()
        await close_shared_session()

    asyncio.run(kill())


class TaskInstance:
    dag_id, run_id, task_id, map_index = "dag", "run", "lipsync", -1


class TriggerOfATaskIn(ScenarioJobTrigger):
    """The trigger with its task instance in a given state, as Airflow's API server would answer the
    lookup (``None``: the lookup fails). The real lookup is exercised in the real deployments."""

    state: str | None = "failed"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.task_instance = TaskInstance()

    async def _read_task_state(self, ti: Any) -> str | None:
        if self.state is None:
            raise ConnectionError("the API server did not answer")
        return self.state


def test_on_kill_cancels_the_remote_job_of_its_owner(scenario_emulator: EmulatorServer) -> None:
    job_id = submit_text_job(scenario_emulator, outcome="stuck")
    kill_while_running(TriggerOfATaskIn(job_id, poll_interval=0.1, cancel_on_exit=True))
    assert ScenarioHook().get_job(job_id)["status"] == "canceled"


@pytest.mark.parametrize("state", ["deferred", "up_for_retry", None])
def test_on_kill_of_a_task_still_deferred_or_of_unknown_state_cancels_nothing(
    scenario_emulator: EmulatorServer, state: str | None, captured_logs: Callable[[], str]
) -> None:
    """A triggerer that stalled past the health threshold and came back calls on_kill for the triggers
    another triggerer took over (Airflow 3.3, apache/airflow PR #73454): their tasks are still deferred."""
    job_id = submit_text_job(scenario_emulator, outcome="stuck")
    trigger = TriggerOfATaskIn(job_id, poll_interval=0.1, cancel_on_exit=True)
    trigger.state = state
    kill_while_running(trigger)
    assert cancel_requests(scenario_emulator) == []
    assert ScenarioHook().get_job(job_id)["status"] == "in-progress"
    expected = f"its task is {state}" if state else "Could not read the state of task lipsync"
    assert expected in captured_logs()


def test_on_kill_after_the_job_ended_sends_no_cancel(
    scenario_emulator: EmulatorServer, captured_logs: Callable[[], str]
) -> None:
    """Found by the soak (tests/soak.py): a triggerer stalled past the health threshold comes back after
    another one saw the job end and the task finished; on Airflow 3.3 it calls on_kill for the trigger it
    lost, and finds the task ``success``. The job has ended: there is nothing to cancel, and no cancel is
    sent."""
    job_id = submit_text_job(scenario_emulator, seconds=0.2)
    deadline = time.monotonic() + 30
    while ScenarioHook().get_job(job_id)["status"] != "success":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    trigger = TriggerOfATaskIn(job_id, poll_interval=0.1, cancel_on_exit=True)
    trigger.state = "success"

    async def kill() -> None:
        await trigger.on_kill()
        await close_shared_session()

    asyncio.run(kill())
    assert cancel_requests(scenario_emulator) == []
    assert f"Scenario job {job_id} already ended (success): nothing to cancel" in captured_logs()


def test_on_kill_without_a_task_instance_cancels_nothing(
    scenario_emulator: EmulatorServer, captured_logs: Callable[[], str]
) -> None:
    job_id = submit_text_job(scenario_emulator, outcome="stuck")
    kill_while_running(ScenarioJobTrigger(job_id, poll_interval=0.1, cancel_on_exit=True))
    assert cancel_requests(scenario_emulator) == []
    assert "with no task instance known: job left running" in captured_logs()


def test_on_kill_outlasts_the_triggerers_repeated_cancels(scenario_emulator: EmulatorServer) -> None:
    # Before 3.3 the triggerer cancels a trigger again at each state sync until it returns; the cancel
    # request, queued 1 s by a gateway, must still reach the API (a request given up there never does).
    job_id = submit_text_job(scenario_emulator, outcome="stuck")
    scenario_emulator.add_fault(r"/action$", method="POST", action="hold", delay=1.0)
    trigger = TriggerOfATaskIn(job_id, poll_interval=0.1, cancel_on_exit=True)

    async def kill_with_repeated_cancels() -> int:
        killing = asyncio.ensure_future(trigger.on_kill())
        cancels = 0
        while not killing.done():
            await asyncio.sleep(0.1)
            killing.cancel()
            cancels += 1
        await close_shared_session()
        return cancels

    cancels = asyncio.run(kill_with_repeated_cancels())
    assert [r["status"] for r in cancel_requests(scenario_emulator)] == [200]
    assert ScenarioHook().get_job(job_id)["status"] == "canceled"
    assert cancels >= 5  # it was cancelled again all the while


def test_on_kill_of_a_watcher_sends_no_cancel(scenario_emulator: EmulatorServer) -> None:
    job_id = submit_text_job(scenario_emulator, outcome="stuck")
    kill_while_running(ScenarioJobTrigger(job_id, poll_interval=0.1))
    assert cancel_requests(scenario_emulator) == []
    assert ScenarioHook().get_job(job_id)["status"] == "in-progress"


def test_serialize_round_trips_in_a_fresh_interpreter() -> None:
    trigger = ScenarioJobTrigger(
        "job_1",
        "my_conn",
        poll_interval=2.5,
        timeout_at=1_900_000_000.5,
        project_id="proj_x",
        cancel_on_exit=True,
    )
    classpath, kwargs = trigger.serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs  # plain JSON
    code = (
        "import importlib, json, sys\n"
        "path, kwargs = json.loads(sys.argv[1])\n"
        "module, name = path.rsplit('.', 1)\n"
        "trigger = getattr(importlib.import_module(module), name)(**kwargs)\n"
        "print(json.dumps(trigger.serialize()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps([classpath, kwargs])],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [classpath, kwargs]
    assert classpath == "airflow_kling.triggers.job.ScenarioJobTrigger"


def test_the_first_poll_waits_for_first_poll_at(scenario_emulator: EmulatorServer) -> None:
    """The operator has just read the job when it defers: the trigger's first poll waits (no event lands
    within the seconds after a deferral, where an Airflow scheduler race would fail the try)."""
    job_id = submit_text_job(scenario_emulator, seconds=0.1)
    first_poll_at = time.time() + 1.0
    (event,) = events_of(ScenarioJobTrigger(job_id, poll_interval=0.1, first_poll_at=first_poll_at))
    assert event["status"] == "success"
    polls = scenario_emulator.store.requests(f"^/v1/jobs/{job_id}$")
    assert len(polls) == 1  # the job had ended by then: one GET
    assert polls[0]["at"] >= first_poll_at
    # Taken over late (first_poll_at long past): it polls at once, and serializes its first_poll_at.
    assert (
        ScenarioJobTrigger(job_id, first_poll_at=first_poll_at).serialize()[1]["first_poll_at"]
        == first_poll_at
    )


def test_a_triggers_watch_writes_its_lines_to_the_triggers_own_log(captured_logs: Callable[[], str]) -> None:
    """The trigger's logger is made at its first line (LogOnFirstLine): the lines still reach its log."""
    from airflow_kling.exceptions import ScenarioTransportError
    from airflow_kling.jobs.polling import PROGRESS_LOG_SECONDS, JobWatch
    from airflow_kling.triggers.job import LogOnFirstLine

    trigger = ScenarioJobTrigger("job_lines")
    now = [0.0]
    watch = JobWatch("job_lines", 5.0, 15.0, LogOnFirstLine(trigger), in_triggerer=True, clock=lambda: now[0])
    watch.seen({"status": "queued", "progress": 0.0})
    assert "Scenario job job_lines: " not in captured_logs()  # one line at most every PROGRESS_LOG_SECONDS
    now[0] = PROGRESS_LOG_SECONDS + 1
    watch.seen({"status": "in-progress", "progress": 0.4})
    watch.failed(ScenarioTransportError("GET /jobs/job_lines failed after 1 attempts: ClientOSError"))
    logs = captured_logs()
    assert "Scenario job job_lines: queued, in-progress (40%)" in logs
    assert "Polling job job_lines failed (GET /jobs/job_lines failed after 1 attempts" in logs
