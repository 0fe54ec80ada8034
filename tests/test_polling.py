"""How waiters pace their polls and share a connection: pure rules, and the cache seen from outside."""

from __future__ import annotations

import asyncio
import json
import logging

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
