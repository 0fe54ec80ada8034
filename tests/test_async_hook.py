"""ScenarioAsyncHook against the emulator: the same answers, retries and errors as the sync hook."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from airflow_kling.emulator import EmulatorServer
from airflow_kling.exceptions import (
    ScenarioAPIError,
    ScenarioAuthError,
    ScenarioNotFoundError,
    ScenarioTransportError,
)
from airflow_kling.hooks.scenario_async import ScenarioAsyncHook, close_shared_session
from tests.connections import use_connection
from tests.media_samples import submit_text_job

# On every line: the hook stands on the http provider, whose version follows the line.
pytestmark = pytest.mark.every_line

T = TypeVar("T")


def run(body: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        try:
            return await body()
        finally:
            await close_shared_session()

    return asyncio.run(main())


def test_get_job_cancel_job_and_get_asset(scenario_emulator: EmulatorServer) -> None:
    job_id = submit_text_job(scenario_emulator, outcome="stuck")

    async def body() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        hook = ScenarioAsyncHook()
        job = await hook.get_job(job_id)
        canceled = await hook.cancel_job(job_id)
        asset = await hook.get_asset(str(job["metadata"]["input"]["videoUrl"]))
        return job, canceled, asset

    job, canceled, asset = run(body)
    assert job["jobId"] == job_id
    assert job["status"] in ("queued", "warming-up", "in-progress")
    assert canceled["status"] == "canceled"
    assert asset["kind"] == "video"


def test_an_answer_later_than_the_connections_timeout_fails_the_call(
    monkeypatch: pytest.MonkeyPatch, scenario_emulator: EmulatorServer
) -> None:
    job_id = submit_text_job(scenario_emulator)
    use_connection(monkeypatch, scenario_emulator, timeout=0.5, max_retries=0)
    scenario_emulator.add_fault("^/v1/jobs/job_", delay=3.0)  # then the job, whole and right
    with pytest.raises(
        ScenarioTransportError, match=r"GET /jobs/job_\S+ .*failed after 1 attempts: \w*Timeout"
    ):
        run(lambda: ScenarioAsyncHook().get_job(job_id))
    assert job_id in run(lambda: ScenarioAsyncHook().get_job(job_id))["jobId"]  # the answer in time passes


def test_retries_honour_retry_after(scenario_emulator: EmulatorServer) -> None:
    job_id = submit_text_job(scenario_emulator)
    scenario_emulator.add_fault("^/v1/jobs/job_", status=429, headers={"Retry-After": "1"})
    scenario_emulator.add_fault("^/v1/jobs/job_", action="drop")
    job = run(lambda: ScenarioAsyncHook().get_job(job_id))
    assert job["jobId"] == job_id
    attempts = scenario_emulator.store.requests("^/v1/jobs/job_")
    assert [a["status"] for a in attempts] == [429, None, 200]
    assert attempts[1]["at"] - attempts[0]["at"] >= 1.0


def test_errors_match_the_sync_hook(
    monkeypatch: pytest.MonkeyPatch, scenario_emulator: EmulatorServer
) -> None:
    with pytest.raises(ScenarioNotFoundError):
        run(lambda: ScenarioAsyncHook().get_job("job_missing"))
    scenario_emulator.add_fault("^/v1/jobs/", status=503, headers={"x-should-retry": "false"})
    with pytest.raises(ScenarioAPIError, match="503"):
        run(lambda: ScenarioAsyncHook().get_job("job_missing"))
    conn = json.loads(scenario_emulator.connection_uri())
    conn["password"] = "nope"
    monkeypatch.setenv("AIRFLOW_CONN_SCENARIO_BAD", json.dumps(conn))
    with pytest.raises(ScenarioAuthError, match="'scenario_bad'"):
        run(lambda: ScenarioAsyncHook("scenario_bad").get_job("job_x"))


def test_a_call_built_once_is_sent_whole_each_time_and_its_repr_names_no_credential(
    monkeypatch: pytest.MonkeyPatch, scenario_emulator: EmulatorServer
) -> None:
    use_connection(monkeypatch, scenario_emulator, project_id="proj_team_a")
    first, second = submit_text_job(scenario_emulator), submit_text_job(scenario_emulator)
    scenario_emulator.store.reset()

    async def body() -> tuple[str, list[str], list[int]]:
        hook = ScenarioAsyncHook()
        call = await hook.prepare("GET", f"/jobs/{first}")
        sent = [(await hook.send(call))[1]["job"]["jobId"] for _ in range(3)]
        # get_job builds its call once for the job last asked for, and anew for another job
        sent += [(await hook.get_job(job_id))["jobId"] for job_id in (first, first, second, first)]
        pages = [len(await hook.recent_jobs(page_size=1)) for _ in range(2)]
        return repr(call) + str(call), sent, pages

    shown, sent, pages = run(body)
    assert sent == [first] * 5 + [second, first]
    assert pages == [1, 1]
    log = scenario_emulator.store.requests("^/v1/jobs")
    assert [entry["path"] for entry in log] == [
        *[f"/v1/jobs/{job_id}" for job_id in [first] * 5 + [second, first]],
        "/v1/jobs",
        "/v1/jobs",
    ]
    assert all(entry["query"].get("projectId") == "proj_team_a" for entry in log)
    assert [entry["query"].get("pageSize") for entry in log[-2:]] == ["1", "1"]
    assert shown == f"PreparedCall(GET /jobs/{first})" * 2
    assert scenario_emulator.config.api_secret not in shown
    assert "Basic" not in shown


def test_hooks_in_one_event_loop_share_one_session_and_its_connections(
    scenario_emulator: EmulatorServer,
) -> None:
    job_id = submit_text_job(scenario_emulator)

    async def body() -> bool:
        first, second = ScenarioAsyncHook(), ScenarioAsyncHook()
        for _ in range(5):
            await first.get_job(job_id)
            await second.get_job(job_id)
        return await first.config() is await first.config()

    assert run(body) is True  # the connection is read once per hook
    polls = scenario_emulator.store.requests("^/v1/jobs/job_")
    assert len(polls) == 10
    assert len({poll["client_port"] for poll in polls}) == 1  # one keep-alive TCP connection for both hooks


def test_each_event_loop_gets_its_own_session_and_an_ended_loop_is_not_kept() -> None:
    """Each loop's hooks share one session (shared_session); the last lease closes it, and the loop is not kept."""
    import gc
    import weakref

    from airflow_kling.hooks.scenario_async import session_lease, shared_session

    loops: list[weakref.ReferenceType[asyncio.AbstractEventLoop]] = []

    async def lease() -> None:
        async with session_lease() as session:
            assert shared_session() is session  # every ask in the loop: the same session
            assert not session.closed
            loops.append(weakref.ref(asyncio.get_running_loop()))
        assert session.closed  # the last lease closed it

    asyncio.run(lease())
    asyncio.run(lease())
    gc.collect()
    assert [loop() for loop in loops] == [None, None]  # neither loop is kept alive by its session
