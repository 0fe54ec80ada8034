"""The slot wait's decisions, on an injected clock: no real sleep, no API (the waits against the emulator are
in tests/test_team_limit.py)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from airflow_kling.jobs.polling import predicted_end_delay
from airflow_kling.triggers.slot import (
    HANDOFF_GRACE,
    HANDOFF_RECHECK,
    HANDOFF_RESUME,
    LOOK_AFTER_END,
    LOOK_MAX,
    LOOK_MIN,
    Act,
    SlotBoard,
    TeamView,
    next_step,
)

TEAM = "team"


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop for the board's futures, never run past what a test awaits."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    loop.close()


async def look(
    board: SlotBoard, limit: int, list_jobs: Callable[[], Awaitable[list[dict[str, Any]]]]
) -> None:
    """Start a look at the team's jobs (one must be due) and wait for its answer."""
    board.look_if_due(TEAM, limit, list_jobs)
    under_way = board.look_under_way(TEAM)
    assert under_way is not None
    assert board.view(TEAM, limit).look_under_way
    await under_way


def view(
    *, looking: bool = False, under_way: bool = False, full: bool = False, next_look: float = math.inf
) -> TeamView:
    return TeamView(looking=looking, look_under_way=under_way, full=full, next_look=next_look)


def test_the_deadline_ends_every_wait() -> None:
    assert next_step(100.0, until=200.0, deadline=100.0, team=view(full=True)).act is Act.END


def test_before_its_timer_a_waiter_sleeps_to_the_first_of_timer_deadline_and_next_look() -> None:
    assert next_step(100.0, until=130.0, deadline=500.0, team=view()).wake == 130.0
    assert next_step(100.0, until=130.0, deadline=120.0, team=view()).wake == 120.0
    step = next_step(100.0, until=130.0, deadline=500.0, team=view(looking=True, next_look=104.0))
    assert (step.act, step.wake, step.until) == (Act.SLEEP, 104.0, 130.0)


def test_a_passed_timer_ends_the_wait_when_the_team_has_room() -> None:
    assert next_step(131.0, until=130.0, deadline=500.0, team=view(looking=True)).act is Act.END


def test_a_passed_timer_does_not_end_the_wait_while_the_team_is_full() -> None:
    step = next_step(131.0, until=130.0, deadline=500.0, team=view(full=True))
    assert (step.act, step.until, step.wake) == (Act.SLEEP, 131.0 + HANDOFF_RECHECK, 131.0 + HANDOFF_RECHECK)
    near_deadline = next_step(131.0, until=130.0, deadline=133.0, team=view(full=True))
    assert near_deadline.wake == 133.0


def test_while_looks_answer_they_alone_wake_waiters_and_a_passed_timer_ends_no_wait(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """A timer that ended a wait the looks did not would send a submission into a team the looks counted:
    refused, its task would defer anew and sit out its ``not_before`` while a slot might free."""
    clock = Clock()
    board = SlotBoard(clock)
    answers: list[list[dict[str, Any]] | Exception] = [
        [job("job_a", 0.5)],
        [job("job_a", 0.5)],
        OSError("no route"),
    ]

    async def list_jobs() -> list[dict[str, Any]]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def join(count: int) -> list[asyncio.Future[None]]:
        return [board.join(TEAM, since=clock.now - n) for n in range(count, 0, -1)]

    woken = loop.run_until_complete(join(2))
    loop.run_until_complete(look(board, 4, list_jobs))  # 1 running of 4: both waiters woken
    assert all(waiter.done() for waiter in woken)
    (third,) = loop.run_until_complete(join(1))
    until = clock.now - 1  # its timer has run out
    team = board.view(TEAM, 4)
    assert team.counted
    assert not team.full  # 1 running + 2 handed over: one slot the next look hands over
    step = next_step(clock.now, until, deadline=clock.now + 600, team=team)
    assert (step.act, step.until) == (Act.SLEEP, clock.now + HANDOFF_RECHECK)  # to decide again
    clock.now = board.next_look(TEAM)
    loop.run_until_complete(look(board, 4, list_jobs))
    assert third.done()  # woken by the look, not by its timer
    (fourth,) = loop.run_until_complete(join(1))
    clock.now += LOOK_MAX + LOOK_AFTER_END + 0.1
    loop.run_until_complete(look(board, 4, list_jobs))  # the API cannot be reached: no count
    team = board.view(TEAM, 4)
    assert not team.counted
    assert (
        next_step(clock.now, until, deadline=clock.now + 600, team=team).act is Act.END
    )  # the timer decides
    assert not fourth.done()


def test_a_passed_timer_awaits_the_look_under_way() -> None:
    step = next_step(131.0, until=130.0, deadline=500.0, team=view(looking=True, under_way=True))
    assert (step.act, step.wake) == (Act.AWAIT_LOOK, 500.0)


def test_a_freed_slot_goes_to_the_longest_waiter_and_counts_taken_for_the_grace(
    loop: asyncio.AbstractEventLoop,
) -> None:
    clock = Clock()
    board = SlotBoard(clock)

    async def join() -> list[asyncio.Future[None]]:
        return [
            board.join(TEAM, since=clock.now - 10, ready_at=clock.now + 8),  # longest, but not ready
            board.join(TEAM, since=clock.now - 5),
            board.join(TEAM, since=clock.now - 1),
        ]

    not_ready, next_in_line, last = loop.run_until_complete(join())
    assert board.freed(TEAM)
    assert [waiter.done() for waiter in (not_ready, next_in_line, last)] == [False, True, False]
    assert board.followed(TEAM) == 1  # the slot handed over counts as taken ...
    clock.now += HANDOFF_GRACE + 0.1
    assert board.followed(TEAM) == 0  # ... until its grace is over
    clock.now += 10  # the first waiter is ready now
    assert board.freed(TEAM)
    assert not_ready.done()
    board.leave(TEAM, last)
    assert board.freed(TEAM) is False  # no one waits: the slot is not kept


def test_a_look_wakes_as_many_waiters_as_the_team_has_slots_free(loop: asyncio.AbstractEventLoop) -> None:
    clock = Clock()
    board = SlotBoard(clock)
    answers = [[job("job_a", 0.5), job("job_b", 0.5)], [job("job_a", 0.9)]]

    async def list_jobs() -> list[dict[str, Any]]:
        return answers.pop(0)

    async def join() -> list[asyncio.Future[None]]:
        return [board.join(TEAM, since=clock.now - n) for n in (3, 2, 1)]

    waiters = loop.run_until_complete(join())
    loop.run_until_complete(look(board, 3, list_jobs))  # 2 running of 3: one slot free, one waiter woken
    assert [waiter.done() for waiter in waiters] == [True, False, False]
    assert board.team_full(TEAM, 3)  # 2 running + 1 handed over
    assert board.next_look(TEAM) == clock.now + LOOK_MAX  # one look says nothing of when a job ends
    first_look = clock.now
    clock.now += LOOK_MAX
    loop.run_until_complete(look(board, 3, list_jobs))  # job_b ended; job_a at 0.9 after 0.4 in LOOK_MAX s
    assert [waiter.done() for waiter in waiters] == [True, True, False]
    end_of_a = predicted_end_delay((first_look, 0.5), clock.now, 0.9, LOOK_MAX)  # 2.5 s at its pace
    assert end_of_a < LOOK_MAX
    assert board.next_look(TEAM) == pytest.approx(clock.now + max(LOOK_MIN, end_of_a + LOOK_AFTER_END))


def test_a_slot_handed_over_a_resume_ago_lets_the_waiters_look_and_the_look_counts_its_job(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The job submitted into a slot handed over here is followed by another triggerer: this one neither stops
    looking until the hand-off's grace is over nor counts that slot twice (once handed, once running)."""
    clock = Clock()
    board = SlotBoard(clock)
    handed_at = clock.now
    answers = [
        [
            job("job_a", 0.5, created=handed_at - 30),
            job(
                "job_c", 0.1, created=handed_at + 2.5
            ),  # submitted into the slot job_b freed, followed elsewhere
        ],
        [job("job_a", 0.6, created=handed_at - 30)],  # job_c ended there
    ]

    async def list_jobs() -> list[dict[str, Any]]:
        return answers.pop(0)

    async def join() -> list[asyncio.Future[None]]:
        return [board.join(TEAM, since=clock.now - n) for n in (2, 1)]

    with board.following(TEAM, "job_a"), board.following(TEAM, "job_b") as job_b:
        first, second = loop.run_until_complete(join())
        job_b.ended()
        assert first.done()
        assert not second.done()
        job_b.ended()  # a second call frees no second slot
        assert not second.done()
        assert not board.view(TEAM, 2).looking  # its task is resuming: the slot is taken, nothing to look for
        clock.now += HANDOFF_RESUME + 0.1
        assert board.followed(TEAM) == 2  # still within the hand-off's grace ...
        assert board.view(TEAM, 2).looking  # ... but its job may be followed elsewhere: look
        loop.run_until_complete(look(board, 2, list_jobs))
        assert board.followed(TEAM) == 1  # the look counts job_c among the running; the hand-off is done
        assert not second.done()  # job_a and job_c run: the team is full
        clock.now = board.next_look(TEAM)
        loop.run_until_complete(look(board, 2, list_jobs))
        assert second.done()  # job_c's end, seen by the look, frees its slot here


def test_a_job_whose_hand_off_a_look_settled_settles_no_other_once_followed_here(
    loop: asyncio.AbstractEventLoop,
) -> None:
    clock = Clock()
    board = SlotBoard(clock)

    created = clock.now + 1  # after both hand-offs

    async def list_jobs() -> list[dict[str, Any]]:
        return [job("job_c", 0.1, created=created)]

    async def hand_two_slots_over_and_look() -> None:
        board.join(TEAM, since=clock.now - 2)
        board.join(TEAM, since=clock.now - 1)
        assert board.freed(TEAM)
        assert board.freed(TEAM)
        clock.now += 1
        await look(board, 4, list_jobs)

    loop.run_until_complete(hand_two_slots_over_and_look())
    assert board.followed(TEAM) == 1  # job_c, seen by the look, settled the first hand-off
    clock.now = board.next_look(TEAM)  # within the second hand-off's grace
    loop.run_until_complete(look(board, 4, list_jobs))
    assert board.followed(TEAM) == 1  # job_c, seen again, settles no second hand-off
    with board.following(TEAM, "job_c"):  # its trigger comes here after all (a second after the look)
        assert board.followed(TEAM) == 2  # job_c and the second hand-off, still on its way


def test_a_failed_look_waits_the_longest_interval_before_the_next(loop: asyncio.AbstractEventLoop) -> None:
    clock = Clock()
    board = SlotBoard(clock)

    async def broken() -> list[dict[str, Any]]:
        raise OSError("no route")

    loop.run_until_complete(look(board, 2, broken))
    assert board.next_look(TEAM) == clock.now + LOOK_MAX
    assert not board.team_full(TEAM, 2)  # a look that failed counts nothing


def job(job_id: str, progress: float, created: float | None = None) -> dict[str, Any]:
    answer = {"jobId": job_id, "jobType": "custom", "status": "in-progress", "progress": progress}
    if created is not None:
        answer["createdAt"] = datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z")
    return answer
