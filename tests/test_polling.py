"""How waiters pace their polls and share a connection: pure rules, and the cache seen from outside."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

import pytest

from airflow_kling.hooks.scenario_async import ScenarioAsyncHook, close_shared_session
from airflow_kling.jobs.polling import JobProgress, error_backoff, next_poll_delay


def test_the_poll_interval_is_a_floor_and_the_stretch_is_bounded() -> None:
    assert next_poll_delay(10, 10, waited=600, progress=0.1) == 10  # no stretch allowed
    assert next_poll_delay(10, 30, waited=5, progress=0.0) == 10  # just started
    assert next_poll_delay(10, 30, waited=80, progress=0.0) == 20  # queued for long: stretch with the wait
    assert next_poll_delay(10, 30, waited=60, progress=0.1) == 30  # far from the end: the bound
    assert next_poll_delay(10, 30, waited=300, progress=0.8) == 30  # (300 s x 0.25) / 2 = 37.5 -> bound
    assert next_poll_delay(10, 30, waited=100, progress=0.9) == 10  # near the end: back to the floor


def test_error_backoff_doubles_from_the_poll_interval_to_a_minute() -> None:
    assert [error_backoff(n, 5) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 40, 60]
    assert error_backoff(1, 120) == 120


def test_hooks_of_one_loop_share_one_connection_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def connection(port: int) -> str:
        return json.dumps(
            {"conn_type": "scenario", "host": f"http://127.0.0.1:{port}/v1", "login": "k", "password": "s"}
        )

    async def within_one_loop() -> tuple[set[str], str]:
        monkeypatch.setenv("AIRFLOW_CONN_SCENARIO_DEFAULT", connection(1111))
        first = await asyncio.gather(*(ScenarioAsyncHook().config() for _ in range(50)))
        monkeypatch.setenv("AIRFLOW_CONN_SCENARIO_DEFAULT", connection(2222))
        later = await ScenarioAsyncHook().config()  # within the cache period: the same reading
        await close_shared_session()
        return {config.base_url for config in first}, later.base_url

    urls, later = asyncio.run(within_one_loop())
    assert urls == {"http://127.0.0.1:1111/v1"}
    assert later == "http://127.0.0.1:1111/v1"

    async def in_a_new_loop() -> str:
        return (await ScenarioAsyncHook().config()).base_url

    assert asyncio.run(in_a_new_loop()) == "http://127.0.0.1:2222/v1"  # a new loop reads it again


def test_a_job_is_logged_at_each_status_and_its_progress_at_most_every_interval() -> None:
    now = [100.0]
    progress = JobProgress("job_1", min_interval=30, clock=lambda: now[0])
    assert progress.update({"status": "queued"}) == ["Scenario job job_1: queued (0%)"]
    now[0] += 5
    # a new status is said at once, 5 s after the last line
    assert progress.update({"status": "in-progress", "progress": 0.1}) == [
        "Scenario job job_1: in-progress (10%)"
    ]
    now[0] += 5
    assert (
        progress.update({"status": "in-progress", "progress": 0.2}) == []
    )  # progress: 5 s after the last line
    now[0] += 30
    assert progress.update({"status": "in-progress", "progress": 0.2}) == [
        "Scenario job job_1: in-progress (20%)"
    ]
    now[0] += 30
    assert progress.update({"status": "in-progress", "progress": 0.2}) == []  # nothing moved
    assert progress.update({"status": "in-progress", "progress": 0.5}) == [
        "Scenario job job_1: in-progress (50%)"
    ]
    now[0] += 1
    assert progress.update({"status": "success", "progress": 1.0}) == ["Scenario job job_1: success (100%)"]


def test_the_statuses_passed_between_two_polls_are_said_from_the_history() -> None:
    """A 40 s job polled at 10 s and at its end: each status it went through gets its line, with its time,
    from ``statusHistory``; a history entry of another shape is not logged."""
    progress = JobProgress("job_1", min_interval=30, clock=lambda: 0.0)

    def step(status: object, second: int) -> dict[str, object]:
        return {"status": status, "date": f"2026-12-06T10:31:{second:02d}.000Z"}

    history = [step("queued", 0), step("warming-up", 2), step("in-progress", 5)]
    assert progress.update({"status": "in-progress", "progress": 0.1, "statusHistory": history}) == [
        "Scenario job job_1: queued at 10:31:00",
        "Scenario job job_1: warming-up at 10:31:02",
        "Scenario job job_1: in-progress (10%)",
    ]
    history += [step("finalizing", 38), step("in progress\nFAKE LINE", 39), step("success", 40)]
    assert progress.update(
        {"status": "success", "progress": 1.0, "statusHistory": history}, with_end=False
    ) == [
        "Scenario job job_1: finalizing at 10:31:38"  # its end is the trigger's event, said by the triggerer
    ]


def test_in_a_triggerer_a_line_at_most_every_interval_says_each_status_reached_since_the_last() -> None:
    """A 70 s job polled every 10 s in a triggerer: a line no sooner than 30 s after the wait began, and then
    after 30 s more, each naming every status reached since the one before; what its end leaves unsaid is
    what the event carries (the woken task says it)."""
    now = [0.0]
    progress = JobProgress("job_1", min_interval=30, batched=True, clock=lambda: now[0])

    def step(status: object, second: int) -> dict[str, object]:
        return {"status": status, "date": f"2026-12-06T10:31:{second:02d}.000Z"}

    history = [step("queued", 0)]

    def poll(status: str, progress_: float) -> list[str]:
        return progress.update({"status": status, "progress": progress_, "statusHistory": list(history)})

    assert poll("queued", 0.0) == []
    now[0] = 10
    history.append(step("warming-up", 8))
    assert poll("warming-up", 0.0) == []
    now[0] = 20
    history.append(step("in-progress", 15))
    assert poll("in-progress", 0.1) == []
    now[0] = 30
    assert poll("in-progress", 0.3) == [
        "Scenario job job_1: queued at 10:31:00, warming-up at 10:31:08, in-progress at 10:31:15 (30%)"
    ]
    now[0] = 40
    assert poll("in-progress", 0.5) == []  # 10 s after the last line
    now[0] = 60
    assert poll("in-progress", 0.5) == []  # nothing moved
    history.append(step("finalizing", 55))
    assert poll("finalizing", 0.9) == ["Scenario job job_1: finalizing at 10:31:55 (90%)"]
    assert progress.unsaid() == []
    now[0] = 70
    history.extend([step("in progress\nFAKE LINE", 58), step("success", 59)])
    assert poll("success", 1.0) == []  # the end is the event's: never a line of the trigger
    assert progress.unsaid() == []

    # A job that ends before the first line: every status it reached is left for the event, with its time.
    short = JobProgress("job_2", min_interval=30, batched=True, clock=lambda: now[0])
    assert short.update({"status": "queued", "statusHistory": history[:1]}) == []
    assert short.update({"status": "success", "progress": 1.0, "statusHistory": history}) == []
    assert short.unsaid() == [
        "queued at 10:31:00",
        "warming-up at 10:31:08",
        "in-progress at 10:31:15",
        "finalizing at 10:31:55",
    ]


def test_a_task_says_the_statuses_its_event_carries_and_nothing_of_another_shape(
    captured_logs: Callable[[], str],
) -> None:
    from airflow_kling.jobs.events import job_event, successful_job

    job = {"jobId": "job_1", "status": "success", "progress": 1.0, "metadata": {"assetIds": ["asset_1"]}}
    event = job_event("success", "job_1", job, "Scenario job job_1 ended with status success")
    event["statuses"] = ["queued at 10:31:00", "in progress\nFAKE LINE", 7, "finalizing at 10:31:55"]
    log = logging.getLogger("test.statuses")
    assert successful_job(event, log)["jobId"] == "job_1"
    said = [line for line in captured_logs().splitlines() if "Scenario job job_1: " in line]
    assert [line.split("Scenario job job_1: ")[1] for line in said] == [
        "queued at 10:31:00",
        "finalizing at 10:31:55",
    ], said
    event["statuses"] = "queued at 10:31:00"  # not a list: nothing said, and still the job
    assert successful_job(event, log)["jobId"] == "job_1"


def test_the_poll_after_a_job_predicted_to_end_is_aimed_just_past_that_end() -> None:
    from airflow_kling.jobs.polling import FINAL_POLL_MARGIN, FINAL_POLL_MIN, JobWatch

    now = [0.0]
    watch = JobWatch("job_x", 5.0, 15.0, logging.getLogger("test"), clock=lambda: now[0])
    assert watch.seen({"status": "in-progress", "progress": 0.5}) == 5.0  # no rate known yet
    now[0] = 5.0
    assert watch.seen({"status": "in-progress", "progress": 0.75}) == 5.0  # 0.05/s: ends in 5 s, not sooner
    now[0] = 8.0
    delay = watch.seen({"status": "in-progress", "progress": 0.9})  # ends in 2 s
    assert delay == pytest.approx(2.0 + FINAL_POLL_MARGIN)
    now[0] = 10.2
    assert watch.seen({"status": "finalizing", "progress": 0.9}) == 5.0  # no progress: no guess
    now[0] = 15.2
    assert watch.seen({"status": "finalizing", "progress": 0.999}) == FINAL_POLL_MIN  # never closer than this
    assert watch.seen({"status": "success", "progress": 1.0}) is None
