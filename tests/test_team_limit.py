"""The team's parallel-job ceiling: the emulator refuses past it as Scenario does (HTTP 429 naming
``parallel-custom-jobs`` and the limit, no ``Retry-After``), the hook hands that refusal over at once, and
the operators wait for a slot (no try used up, nothing paid twice); a retry never pays again for a
permanent refusal. Each case is counted on the emulator's books."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_kling.emulator import EmulatorServer
from airflow_kling.exceptions import ScenarioTeamLimitError
from airflow_kling.hooks.scenario import ScenarioHook
from airflow_kling.jobs.polling import SLOT_WAIT_FIRST, SLOT_WAIT_MAX, slot_wait_delay
from airflow_kling.jobs.submission import MemoryRecordStore, SubmitRecord, inputs_digest
from airflow_kling.models.kling_lipsync import PERMANENT_FAILURES
from tests.media_samples import sample_video

MODEL = "model_kling-lip-sync"
GENERATE = "^/v1/generate/"


def slot_waiters(team: str, limit: int, timer: float) -> list[Any]:
    """Two slot triggers of ``team`` started in the running loop, the first refused 5 s before the second,
    their timers ``timer`` seconds away: the futures of their first events."""
    import asyncio
    import time

    from airflow_kling.triggers.slot import ScenarioSlotTrigger

    now = time.time()
    return [
        asyncio.ensure_future(
            anext(aiter(ScenarioSlotTrigger(now + timer, team, since, limit=limit, deadline=now + 120).run()))
        )
        for since in (now - 5, now)
    ]


def test_past_the_ceiling_the_hook_hands_the_refusal_over_at_once(
    scenario_emulator: EmulatorServer, inputs: dict[str, object]
) -> None:
    scenario_emulator.store.config.team_job_limit = 1
    scenario_emulator.plan_jobs(seconds=30)
    hook = ScenarioHook()
    hook.run_model(MODEL, inputs)
    with pytest.raises(ScenarioTeamLimitError) as raised:
        hook.run_model(MODEL, {**inputs, "text": "another one"})
    assert raised.value.limit == 1
    assert raised.value.status == 429
    assert "limit of 1 parallel custom jobs" in str(raised.value)
    assert [r["status"] for r in scenario_emulator.store.paid_submissions()] == [200, 429]  # no quick retries
    assert len(scenario_emulator.store.jobs) == 1
    assert scenario_emulator.store.refused_submissions == 1


def test_a_429_with_retry_after_on_generate_is_still_retried_at_once(
    scenario_emulator: EmulatorServer, inputs: dict[str, object]
) -> None:
    scenario_emulator.add_fault(GENERATE, status=429, headers={"Retry-After": "0.1"}, times=1)
    job = ScenarioHook().run_model(MODEL, inputs)["job"]
    assert [r["status"] for r in scenario_emulator.store.paid_submissions()] == [429, 200]
    assert list(scenario_emulator.store.jobs) == [job["jobId"]]


def test_a_refused_submission_leaves_a_record_that_looks_for_nothing(
    scenario_emulator: EmulatorServer, inputs: dict[str, object]
) -> None:
    scenario_emulator.store.config.team_job_limit = 1
    scenario_emulator.plan_jobs(seconds=1)
    hook = ScenarioHook()
    hook.run_model(MODEL, {**inputs, "text": "the job holding the slot"})
    # An earlier try gave up on a job: it stays claimed through the refusal and the next submission.
    earlier = SubmitRecord(inputs_digest(MODEL, inputs), 0.0, None, None, ("job_givenup",), refused=True)
    store = MemoryRecordStore(earlier)
    with pytest.raises(ScenarioTeamLimitError):
        hook.submit_once(MODEL, inputs, store=store, settle_seconds=30)
    assert store.record is not None
    assert (store.record.refused, store.record.job_id, store.record.claimed) == (True, None, ("job_givenup",))
    scenario_emulator.store.config.team_job_limit = None
    submission = hook.submit_once(MODEL, inputs, store=store, settle_seconds=30)  # the next try
    assert submission.how == "submitted"
    assert scenario_emulator.store.requests("^/v1/jobs$") == []  # no lookup for a job never created
    assert store.record.claimed == ("job_givenup",)
    assert SubmitRecord.from_json(store.record.to_json()) == store.record  # as the task state store keeps it
    assert len(scenario_emulator.store.jobs) == 2


def test_the_slot_wait_doubles_up_to_its_bound_with_jitter_that_only_shortens() -> None:
    assert [slot_wait_delay(n, jitter=lambda: 0.0) for n in range(6)] == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    assert slot_wait_delay(0, jitter=lambda: 0.999) == pytest.approx(SLOT_WAIT_FIRST * 0.5, rel=0.01)
    assert slot_wait_delay(10, jitter=lambda: 0.5) == SLOT_WAIT_MAX * 0.75


@pytest.mark.parametrize("store_outlives_a_try", [True, False])
def test_a_retry_after_a_permanent_refusal_fails_with_it_and_pays_nothing(
    scenario_emulator: EmulatorServer, inputs: dict[str, object], store_outlives_a_try: bool
) -> None:
    """The scheduler race of the issue on purpose: try 1's job failed "No face detected", and the try was
    marked up for retry before it could fail for good; try 2 finds that job (by its record on 3.3, by its
    inputs before) and must not submit a new one."""
    import time

    scenario_emulator.plan_jobs(
        "failure", error="No face detected", hint="Use a clip with a visible face", seconds=0.1
    )
    hook = ScenarioHook()
    started = time.time()
    first = hook.run_model(MODEL, inputs)["job"]["jobId"]
    time.sleep(0.5)
    if store_outlives_a_try:
        store = MemoryRecordStore(SubmitRecord(inputs_digest(MODEL, inputs), started, first))
        again = hook.submit_once(MODEL, inputs, store=store, permanent_failures=PERMANENT_FAILURES)
    else:
        again = hook.submit_once(MODEL, inputs, adopt_since=started, permanent_failures=PERMANENT_FAILURES)
    assert (again.job_id, again.how, again.job["status"]) == (first, "reattached", "failure")
    assert len(scenario_emulator.store.paid_submissions()) == 1
    # A failure a retry can change (not on the list) is paid for again, as before.
    scenario_emulator.plan_jobs("failure", error="Internal error", seconds=0.1)
    other = {**inputs, "text": "a temporary failure"}
    second = hook.run_model(MODEL, other)["job"]["jobId"]
    time.sleep(0.5)
    store = MemoryRecordStore(SubmitRecord(inputs_digest(MODEL, other), started, second))
    assert (
        hook.submit_once(MODEL, other, store=store, permanent_failures=PERMANENT_FAILURES).how == "submitted"
    )
    assert len(scenario_emulator.store.paid_submissions()) == 3


def test_the_ceiling_is_set_from_the_command_line_and_the_admin_api(monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import socket

    import requests

    from airflow_kling.emulator.server import spawn_emulator

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    process = spawn_emulator(port, team_job_limit=1, job_seconds=60)
    try:
        origin = f"http://127.0.0.1:{port}"
        connection = {"conn_type": "scenario", "host": f"{origin}/v1", "login": "emulator-key"}
        monkeypatch.setenv(
            "AIRFLOW_CONN_SCENARIO_DEFAULT", json.dumps({**connection, "password": "emulator-secret"})
        )
        hook = ScenarioHook()
        video = hook.upload_asset(sample_video())
        hook.run_model(MODEL, {"videoUrl": video, "text": "one"})
        with pytest.raises(ScenarioTeamLimitError) as raised:  # --team-job-limit 1
            hook.run_model(MODEL, {"videoUrl": video, "text": "two"})
        assert raised.value.limit == 1
        requests.post(
            f"{origin}/_emulator/settings", json={"team_job_limit": 2}, timeout=10
        ).raise_for_status()
        hook.run_model(MODEL, {"videoUrl": video, "text": "two"})
        requests.post(
            f"{origin}/_emulator/settings", json={"team_job_limit": None}, timeout=10
        ).raise_for_status()
        hook.run_model(MODEL, {"videoUrl": video, "text": "three"})
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_job_that_ends_in_the_triggerer_hands_its_slot_to_the_longest_waiter(
    scenario_emulator: EmulatorServer,
) -> None:
    """The hand-off on real triggers in one event loop, as a triggerer runs them: each job that ends wakes
    one waiter of its connection, the one refused first, long before its timer; a waiter of another
    connection is left to its timer."""
    import asyncio
    import time

    from airflow_kling.hooks.scenario_async import close_shared_session
    from airflow_kling.triggers.job import ScenarioJobTrigger
    from airflow_kling.triggers.slot import SLOTS, ScenarioSlotTrigger
    from tests.media_samples import submit_text_job

    first = submit_text_job(scenario_emulator, seconds=0.5)
    second = submit_text_job(scenario_emulator, seconds=3)
    now = time.time()
    far = now + 600  # the timers never decide here

    async def first_event(trigger: Any) -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("no event")

    async def scenario() -> None:
        try:
            newer = asyncio.ensure_future(first_event(ScenarioSlotTrigger(far, waiting_since=now)))
            older = asyncio.ensure_future(first_event(ScenarioSlotTrigger(far, waiting_since=now - 10)))
            other = asyncio.ensure_future(
                first_event(ScenarioSlotTrigger(far, scenario_conn_id="another_team", waiting_since=now - 99))
            )
            await asyncio.sleep(0.2)  # both waiting before the job ends
            ended = await asyncio.wait_for(
                first_event(ScenarioJobTrigger(first, poll_interval=0.1, cancel_on_exit=True)), 60
            )
            assert ended["status"] == "success"
            assert (await asyncio.wait_for(older, 5))["status"] == "slot_freed"
            await asyncio.sleep(0.5)
            assert not newer.done()  # one freed slot, one waiter
            assert scenario_emulator.store.job(second).created_at < time.time() < far
            ended = await asyncio.wait_for(
                first_event(ScenarioJobTrigger(second, poll_interval=0.1, cancel_on_exit=True)), 60
            )
            assert ended["status"] == "success"
            assert (await asyncio.wait_for(newer, 5))["status"] == "slot_freed"
            assert not other.done()  # another connection's team: its timer decides
            other.cancel()
            await asyncio.gather(other, return_exceptions=True)
            assert not SLOTS.freed("another_team")  # a cancelled waiter left the board: no one to wake
        finally:
            await close_shared_session()

    asyncio.run(scenario())


def test_a_slot_wait_whose_time_has_passed_ends_at_once() -> None:
    import asyncio
    import time

    from airflow_kling.triggers.slot import ScenarioSlotTrigger

    async def collect() -> list[dict[str, Any]]:
        return [dict(event.payload) async for event in ScenarioSlotTrigger(time.time() - 1).run()]

    (event,) = asyncio.run(asyncio.wait_for(collect(), 30))
    assert event["status"] == "slot_wait_over"


def test_a_slot_wait_never_fires_before_its_not_before_time(scenario_emulator: EmulatorServer) -> None:
    """Neither its timer nor a freed slot ends the wait inside the scheduler's race window."""
    import asyncio
    import time

    from airflow_kling.triggers.slot import SLOTS, ScenarioSlotTrigger

    async def scenario() -> tuple[dict[str, Any], float]:
        not_before = time.time() + 1.5
        trigger = ScenarioSlotTrigger(time.time() + 600, waiting_since=0.0, not_before=not_before)
        waiting = asyncio.ensure_future(anext(aiter(trigger.run())))
        await asyncio.sleep(0.1)
        assert SLOTS.freed("scenario_default")
        return dict((await asyncio.wait_for(waiting, 30)).payload), not_before

    event, not_before = asyncio.run(scenario())
    assert event["status"] == "slot_freed"
    assert time.time() >= not_before


def test_while_this_triggerer_follows_all_the_teams_jobs_only_a_hand_off_ends_the_wait(
    scenario_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The timer of a waiter would only meet the ceiling again when every running job is followed here (a
    slot just handed over counts until its job is followed): it waits on, up to its deadline, for the slot
    a job's end hands over."""
    import asyncio
    import time

    from airflow_kling.hooks.scenario_async import close_shared_session
    from airflow_kling.triggers.job import ScenarioJobTrigger
    from airflow_kling.triggers.slot import SLOTS, ScenarioSlotTrigger
    from tests.media_samples import submit_text_job

    team = "scenario_handoff"  # a connection of its own: the board is the process's
    monkeypatch.setenv("AIRFLOW_CONN_SCENARIO_HANDOFF", scenario_emulator.connection_uri())
    first, second = (
        submit_text_job(scenario_emulator, seconds=4),
        submit_text_job(scenario_emulator, seconds=1),
    )

    async def scenario() -> tuple[dict[str, Any], float, int, int]:
        try:
            following = asyncio.ensure_future(
                anext(aiter(ScenarioJobTrigger(first, team, poll_interval=0.2, cancel_on_exit=True).run()))
            )
            await asyncio.sleep(0.1)
            assert SLOTS.followed(team) == 1
            now = time.time()
            trigger = ScenarioSlotTrigger(now + 0.5, team, waiting_since=now, limit=1, deadline=now + 120)
            event = await asyncio.wait_for(anext(aiter(trigger.run())), 60)  # past its 0.5 s timer
            assert (await asyncio.wait_for(following, 10)).payload["status"] == "success"
            waited, handed = time.time() - now, SLOTS.followed(team)  # the slot handed over, its job not yet
            next_job = ScenarioJobTrigger(second, team, poll_interval=0.2, cancel_on_exit=True).run()
            await asyncio.wait_for(anext(aiter(next_job)), 30)  # the job submitted into it, followed here
            return dict(event.payload), waited, handed, SLOTS.followed(team)
        finally:
            await close_shared_session()

    event, waited, handed, after = asyncio.run(scenario())
    assert event["status"] == "slot_freed"
    assert waited > 1.0  # not at its timer: at the job's end
    assert (handed, after) == (1, 0)

    # With fewer jobs followed here than the limit, the timer decides as before.
    async def alone() -> dict[str, Any]:
        now = time.time()
        trigger = ScenarioSlotTrigger(
            now + 0.2, "lonely_team", waiting_since=now, limit=1, deadline=now + 120
        )
        return dict((await asyncio.wait_for(anext(aiter(trigger.run())), 30)).payload)

    assert asyncio.run(alone())["status"] == "slot_wait_over"


def test_a_freed_slot_goes_to_the_longest_waiter_that_can_submit_now() -> None:
    """A waiter that just met the ceiling again keeps its place (it waited longest) but cannot submit until
    its not-before time: the slot goes to the next one that can, and counts as taken until its job is
    followed here."""
    import asyncio
    import time

    from airflow_kling.triggers.slot import SlotBoard

    async def scenario() -> tuple[bool, bool, bool, int]:
        board = SlotBoard()
        now = time.time()
        oldest_but_not_ready = board.join("team", since=now - 60, ready_at=now + 8)
        next_in_line = board.join("team", since=now - 30)
        last = board.join("team", since=now - 1)
        assert board.freed("team")
        return oldest_but_not_ready.done(), next_in_line.done(), last.done(), board.followed("team")

    assert asyncio.run(scenario()) == (False, True, False, 1)


def test_a_job_followed_elsewhere_frees_a_slot_here_through_a_look_at_the_teams_jobs(
    scenario_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slot held by a job that no trigger here follows (another triggerer's): the waiters of this process
    look at the team's jobs together, one look at a time; the slot free after the job's end wakes the longest
    waiter, and the timer, passed meanwhile, did not end the wait while the look counted the team full."""
    import asyncio
    import time

    from airflow_kling.hooks.scenario_async import close_shared_session
    from tests.media_samples import submit_text_job

    team = "scenario_elsewhere"
    monkeypatch.setenv("AIRFLOW_CONN_SCENARIO_ELSEWHERE", scenario_emulator.connection_uri())
    job = submit_text_job(scenario_emulator, seconds=6)
    store = scenario_emulator.store
    looks_before = len(store.requests("^/v1/jobs$"))

    async def scenario() -> tuple[dict[str, Any], bool, float]:
        try:
            waiters = slot_waiters(team, limit=1, timer=0.5)
            event = await asyncio.wait_for(waiters[0], 60)
            ended_at = time.time()
            await asyncio.sleep(0.5)
            later_one_done = waiters[1].done()
            waiters[1].cancel()
            await asyncio.gather(waiters[1], return_exceptions=True)
            return dict(event.payload), later_one_done, ended_at
        finally:
            await close_shared_session()

    event, later_one_done, woken_at = asyncio.run(scenario())
    job_end = store.job(job).created_at + store.job(job).seconds
    assert event["status"] == "slot_freed"
    assert not later_one_done  # one job ended: one slot, one waiter
    assert woken_at >= job_end  # by the job's end (a slot_freed event), not by the 0.5 s timer
    looks = len(store.requests("^/v1/jobs$")) - looks_before
    assert 2 <= looks <= 6  # one at a time for both waiters, not one per waiter and second


def test_a_look_hands_over_no_slot_of_a_job_followed_or_ended_here(
    scenario_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two jobs of a team limited to 2: one followed here, one elsewhere. The one followed here hands its
    slot over when it ends; the looks count that slot taken (no job is submitted into it here) and do not
    hand it over a second time: the second waiter waits on until the other job ends."""
    import asyncio
    import time

    from airflow_kling.hooks.scenario_async import close_shared_session
    from airflow_kling.triggers.job import ScenarioJobTrigger
    from tests.media_samples import submit_text_job

    team = "scenario_mixed"
    monkeypatch.setenv("AIRFLOW_CONN_SCENARIO_MIXED", scenario_emulator.connection_uri())
    here = submit_text_job(scenario_emulator, seconds=3)
    elsewhere = submit_text_job(scenario_emulator, seconds=16)  # past one look at LOOK_MAX
    store = scenario_emulator.store

    async def scenario() -> tuple[list[str], list[float]]:
        try:
            following = asyncio.ensure_future(
                anext(aiter(ScenarioJobTrigger(here, team, poll_interval=0.3).run()))
            )
            await asyncio.sleep(0.2)
            waiters = slot_waiters(team, limit=2, timer=600)
            statuses, times = [], []
            for waiter in waiters:
                statuses.append((await asyncio.wait_for(waiter, 60)).payload["status"])
                times.append(time.time())
            assert (await following).payload["status"] == "success"
            return statuses, times
        finally:
            await close_shared_session()

    statuses, times = asyncio.run(scenario())
    assert statuses == ["slot_freed", "slot_freed"]
    first_end = store.job(here).created_at + store.job(here).seconds
    second_end = store.job(elsewhere).created_at + store.job(elsewhere).seconds
    assert first_end <= times[0] < second_end
    assert times[1] >= second_end  # not woken by the first job's end seen again in a look


def test_a_slot_handed_over_whose_submission_was_refused_stops_counting_as_taken() -> None:
    """Two triggerers may wake a waiter each for one freed slot; the task refused all the same waits again with
    ``handed_back``: the slot it was handed no longer makes this triggerer think it follows the whole team."""
    import asyncio
    import time

    from airflow_kling.triggers.slot import SLOTS, ScenarioSlotTrigger

    team = "scenario_refused_again"

    async def scenario() -> tuple[int, int, dict[str, Any]]:
        SLOTS.join(team, since=time.time())
        assert SLOTS.freed(team)
        handed = SLOTS.followed(team)
        trigger = ScenarioSlotTrigger(time.time() - 1, team, limit=1, handed_back=True)
        assert trigger.serialize()[1]["handed_back"] is True
        event = await asyncio.wait_for(anext(aiter(trigger.run())), 30)
        return handed, SLOTS.followed(team), dict(event.payload)

    handed, after, event = asyncio.run(scenario())
    assert (handed, after) == (1, 0)
    assert event["status"] == "slot_wait_over"  # nothing followed, no look fresh: its passed timer ends it


def test_a_look_that_sees_a_new_job_settles_a_slot_handed_over_here(
    scenario_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slot handed over here whose job another triggerer follows: the job never starts being followed here,
    so the next look that sees it new settles the hand-off, and the slot no longer counts as taken."""
    import asyncio
    import time

    from airflow_kling.hooks.scenario_async import ScenarioAsyncHook, close_shared_session, session_lease
    from airflow_kling.triggers.slot import SlotBoard
    from tests.media_samples import submit_text_job

    team = "scenario_settle"
    monkeypatch.setenv("AIRFLOW_CONN_SCENARIO_SETTLE", scenario_emulator.connection_uri())

    async def recent_jobs() -> list[dict[str, Any]]:
        async with session_lease():
            return await ScenarioAsyncHook(team).recent_jobs()

    async def look(board: SlotBoard) -> None:
        await asyncio.sleep(max(0.0, board.next_look(team) - time.time()))
        board.look_if_due(team, 3, recent_jobs)
        under_way = board.look_under_way(team)
        assert under_way is not None
        await under_way

    def looks_made() -> int:
        return len(scenario_emulator.store.requests("^/v1/jobs$"))

    async def scenario() -> tuple[int, int, int]:
        before = looks_made()
        try:
            board = SlotBoard()
            board.join(team, since=time.time())
            assert board.freed(team)
            await look(board)
            handed = board.followed(team)
            job = await asyncio.to_thread(submit_text_job, scenario_emulator, seconds=60)
            await look(board)
            assert scenario_emulator.store.job(job).created_at < time.time()
            return handed, board.followed(team), looks_made() - before
        finally:
            await close_shared_session()

    handed, after, looks = asyncio.run(scenario())
    assert (handed, after) == (1, 0)
    assert looks == 2  # one request a look
