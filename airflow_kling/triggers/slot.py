"""The deferrable wait for a slot of the team's parallel jobs.

A submission refused at the team's limit waits in the triggerer, holding no worker slot and no try, until its
backoff timer runs out or, sooner, a slot of the team frees.

The hand-off is in-process: :data:`SLOTS` pairs the job triggers that see a job end with the slot
triggers that wait, one freed slot for the longest waiter. While one triggerer follows all the team's
running jobs, only a hand-off ends a wait there, up to the operator's ``timeout``.

A slot held by a job followed elsewhere (another triggerer, another client of the team) is seen free through
the API: while fewer of the team's jobs than its limit are followed here, the waiters' process looks at the
team's newest jobs (``GET /jobs``, one page, one look at a time for all its waiters), aimed a few seconds past
the end that the jobs' progress predicts (time for the triggerer that follows the job to hand its slot over
there), and wakes as many waiters as the team has slots free. While looks answer, they alone decide how many
waiters wake: a waiter's backoff timer that ran out then ends no wait, for each submission it woke beyond the
looks' count would only be refused, and its task would wait out a new deferral while a slot might free. The
timer ends a wait when no look has answered lately (the API unreachable) or no limit is known.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from typing_extensions import override

from airflow_kling.api.contract import MAX_TEAM_LIMIT
from airflow_kling.hooks.connection import DEFAULT_CONN_ID
from airflow_kling.jobs.polling import predicted_end_delay
from airflow_kling.jobs.status import is_terminal, parse_api_date

log = logging.getLogger(__name__)

SLOT_FREED = "slot_freed"
"""The slot trigger's event status when a slot of its connection's team freed (a job followed here ended, or
a look saw the team below its limit)."""
SLOT_WAIT_OVER = "slot_wait_over"
"""The slot trigger's event status when its backoff timer ran out."""
HANDOFF_RECHECK = 5.0
"""Seconds between two looks at whether this triggerer still follows every running job of the team."""
HANDOFF_GRACE = 15.0
"""Seconds a slot handed to a waiter counts as taken at most, until the job submitted into it is followed here or
a look accounts for it (a woken task resumes and submits in a few seconds; one slower to come is refused at
worst)."""
HANDOFF_CLOCK_SKEW = 2.0
"""Seconds the API's clock may be behind this machine's when a job's creation is compared with a hand-off."""
HANDOFF_RESUME = 6.0
"""Seconds a woken task takes to resume and submit, as a rule. A slot handed over longer ago no longer keeps this
process from looking at the team's jobs: its job may be followed by another triggerer, which only a look sees
(:meth:`SlotBoard._settle_handoffs`)."""
LOOK_MIN = 1.0
"""Seconds between two looks at the team's jobs, at least."""
LOOK_MAX = 10.0
"""Seconds between two looks at the team's jobs, at most, while a waiter here waits for a slot held by a job
followed elsewhere (the most a job's end seen by no trigger here waits to be noticed, when its progress
predicts nothing)."""
LOOK_AFTER_END = 3.0
"""Seconds after a job's predicted end that a look is aimed at: time for the triggerer that follows the job to
hand its slot over and for that task to submit, so that the look sees the slot taken instead of waking a
second task for it (which would only be refused)."""

Clock = Callable[[], float]
"""Wall-clock time in epoch seconds (``time.time``; a test passes its own)."""
WAKES_PER_LOOK = 10
"""Waiters one look wakes at most, whatever the limit it was told (the next look, a second or more later, wakes
more if the team still has room): a wrong limit never sends a crowd into the ceiling at once."""
JobLister = Callable[[], Awaitable[list[dict[str, Any]]]]
"""Lists the team's newest jobs (:meth:`~airflow_kling.hooks.scenario_async.ScenarioAsyncHook.recent_jobs`)."""


@dataclass
class TeamLook:
    """What this process last saw of a team's jobs through the API.

    :param at: when the last look answered (epoch seconds); 0 before the first.
    :param next_at: when the next look is due (epoch seconds).
    :param running: the team's custom jobs that had not ended at the last look: job id -> (when seen,
        progress), the sample a prediction of its end is made from.
    :param in_flight: the look under way, if one is.
    :param settled_by: running jobs, followed elsewhere, that settled a slot handed over here.
    """

    at: float = 0.0
    next_at: float = 0.0
    running: dict[str, tuple[float, float]] = field(default_factory=dict)
    in_flight: asyncio.Task[None] | None = None
    settled_by: set[str] = field(default_factory=set)


@dataclass
class Waiter:
    """A task waiting in this process for a slot of its team.

    :param since: when its task first met the ceiling (epoch seconds): the waiters' order.
    :param ready_at: before this time it cannot submit (epoch seconds): it yields a slot to one that can.
    :param woken: resolved when a slot is handed to it.
    """

    since: float
    ready_at: float
    woken: asyncio.Future[None]


class Following:
    """One job trigger's follow of a job on a :class:`SlotBoard`: see :meth:`SlotBoard.following`."""

    __slots__ = ("board", "conn_id", "done", "job_id")

    def __init__(self, board: SlotBoard, conn_id: str, job_id: str) -> None:
        self.board, self.conn_id, self.job_id, self.done = board, conn_id, job_id, False

    def __enter__(self) -> Following:
        board, conn_id = self.board, self.conn_id
        look = board._looks.get(conn_id)
        if look is None or self.job_id not in look.settled_by:  # a look may have settled its hand-off already
            board.handoff_settled(conn_id)
        board._followed.setdefault(conn_id, set()).add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def ended(self) -> None:
        """The job ended: it stops counting and its slot goes to a waiter (once)."""
        if not self.done:
            self.stop()
            self.board.freed(self.conn_id)

    def stop(self) -> None:
        """The job stops counting as followed here (once)."""
        if not self.done:
            self.done = True
            followed = self.board._followed[self.conn_id]
            followed.remove(self)
            if not followed:
                del self.board._followed[self.conn_id]


class SlotBoard:
    """The slot waiters of one process, by Scenario connection id, oldest first.

    A job trigger that sees its job end calls :meth:`freed`, which wakes the waiter that has waited
    longest (by the time its task was first refused), so a batch's clips get the slots in the order they
    met the ceiling. A slot freed while no one waits is not kept: another client may have taken it.

    :param clock: wall-clock time in epoch seconds; default ``time.time``.
    """

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self._waiters: dict[str, list[Waiter]] = {}
        self._followed: dict[str, set[Following]] = {}  # the jobs followed here
        self._handed: dict[str, list[float]] = {}  # when slots were handed over, oldest first
        self._looks: dict[str, TeamLook] = {}

    def following(self, conn_id: str, job_id: str = "") -> Following:
        """While a job trigger of ``conn_id`` follows job ``job_id`` in this process (a ``with`` block).

        Most likely the job was submitted into a slot handed over here: that hand-off is done. The block is
        given the follow, whose :meth:`Following.ended` the trigger calls when the job ends, before its event:
        the job stops counting and its slot goes to a waiter (:meth:`freed`); calling it again does nothing.
        """
        return Following(self, conn_id, job_id)

    def followed(self, conn_id: str) -> int:
        """How many jobs of ``conn_id`` this process follows now.

        Counting the slots it handed over in the last :data:`HANDOFF_GRACE` seconds whose jobs it does not
        follow yet.
        """
        return len(self._followed.get(conn_id, ())) + self._handed_now(conn_id)

    def handoff_settled(self, conn_id: str) -> None:
        """The oldest slot handed over here stops counting as taken.

        Its job is followed here now, or the submission into it was refused (another triggerer's waiter took
        the slot first).
        """
        handed = self._handed.get(conn_id)
        if handed:
            handed.pop(0)

    def _handed_now(self, conn_id: str, within: float = HANDOFF_GRACE) -> int:
        """Slots handed over here in the last ``within`` seconds and not settled.

        Those past :data:`HANDOFF_GRACE` are forgotten.
        """
        handed = self._handed.get(conn_id)
        if not handed:
            return 0
        now = self.clock()
        handed[:] = [at for at in handed if at >= now - HANDOFF_GRACE]
        return sum(1 for at in handed if at >= now - within)

    def looking(self, conn_id: str, limit: int) -> bool:
        """Whether some of the team's slots may be held by jobs followed elsewhere, which only a look sees end.

        So it is while this process follows fewer than ``limit`` jobs of ``conn_id``, counting the slots it handed
        over in the last :data:`HANDOFF_RESUME` seconds (their tasks are still resuming).
        """
        return len(self._followed.get(conn_id, ())) + self._handed_now(conn_id, HANDOFF_RESUME) < limit

    def team_full(self, conn_id: str, limit: int) -> bool:
        """Whether a submission of ``conn_id``'s team would meet its ``limit`` now, as far as known here.

        So it is when this process follows that many jobs (slots just handed over included), or when its last
        look at the team's jobs, younger than the longest time between two looks, counted that many running.
        """
        if self.followed(conn_id) >= limit:
            return True
        look = self._looks.get(conn_id)
        if look is None or self.clock() - look.at > LOOK_MAX + LOOK_AFTER_END:
            return False
        return len(look.running) + self._handed_now(conn_id) >= limit

    def counted(self, conn_id: str) -> bool:
        """Whether a look at ``conn_id``'s team answered within the longest time between two looks.

        Such looks wake as many waiters as the team has room for (:meth:`look_if_due`).
        """
        look = self._looks.get(conn_id)
        return look is not None and look.at > 0 and self.clock() - look.at <= LOOK_MAX + LOOK_AFTER_END

    def view(self, conn_id: str, limit: int | None) -> TeamView:
        """What this process knows of ``conn_id``'s team now, for :func:`next_step`."""
        looking = limit is not None and self.looking(conn_id, limit)
        return TeamView(
            looking=looking,
            look_under_way=self.look_under_way(conn_id) is not None,
            full=limit is not None and self.team_full(conn_id, limit),
            next_look=self.next_look(conn_id) if looking else math.inf,
            counted=looking and self.counted(conn_id),
        )

    def look_under_way(self, conn_id: str) -> asyncio.Task[None] | None:
        """The look at ``conn_id``'s team that has not answered yet, if there is one."""
        look = self._looks.get(conn_id)
        if look is None or look.in_flight is None or look.in_flight.done():
            return None
        return look.in_flight

    def next_look(self, conn_id: str) -> float:
        """When a look at ``conn_id``'s team is due (epoch seconds).

        While one is under way, :data:`LOOK_MIN` from now (its answer wakes the waiters it frees a slot for).
        """
        look = self._looks.get(conn_id)
        if look is None:
            return 0.0
        return self.clock() + LOOK_MIN if self.look_under_way(conn_id) else look.next_at

    def look_if_due(self, conn_id: str, limit: int, list_jobs: JobLister) -> None:
        """Start a look at the team's jobs when one is due and none is under way.

        One look at a time for all of this process's waiters. It wakes as many waiters as the team has slots
        free: ``limit`` less the jobs running less the slots handed over here (:meth:`freed`).
        """
        look = self._looks.setdefault(conn_id, TeamLook())
        if self.look_under_way(conn_id) or self.clock() < look.next_at:
            return
        look.in_flight = asyncio.ensure_future(self._look(conn_id, limit, look, list_jobs))

    async def _look(self, conn_id: str, limit: int, look: TeamLook, list_jobs: JobLister) -> None:
        try:
            jobs = await list_jobs()
        except Exception as error:  # a look is a hint: the timer still ends the wait
            log.warning("Could not look at the team's jobs of %s: %s", conn_id, error)
            look.next_at = self.clock() + LOOK_MAX
            return
        now = self.clock()
        followed_here = {following.job_id for following in self._followed.get(conn_id, ())}
        running = {
            str(job.get("jobId")): (now, float(job.get("progress") or 0.0))
            for job in jobs
            if job.get("jobType", "custom") == "custom"  # the ceiling counts custom jobs only
            and not is_terminal(str(job.get("status")))
        }
        self._settle_handoffs(conn_id, look, jobs, running.keys() - followed_here)
        ends = [
            delay + LOOK_AFTER_END
            for job_id, (_, progress) in running.items()
            if job_id not in followed_here  # the trigger that follows a job here hands its slot over
            and (delay := predicted_end_delay(look.running.get(job_id), now, progress, LOOK_MAX)) < LOOK_MAX
        ]
        look.at, look.running = now, running
        look.next_at = now + max(LOOK_MIN, min(ends, default=LOOK_MAX))
        for _ in range(min(limit - len(running) - self._handed_now(conn_id), WAKES_PER_LOOK)):
            if not self.freed(conn_id):
                break

    def _settle_handoffs(
        self, conn_id: str, look: TeamLook, jobs: list[dict[str, Any]], candidates: set[str]
    ) -> None:
        """Settle the slots handed over here whose jobs a look sees run, followed by no trigger here.

        Such a job was submitted into one by a task woken here, its job followed by another triggerer. A job
        created after a hand-off (less :data:`HANDOFF_CLOCK_SKEW`) settles the oldest such; one whose creation
        is not known, only when it is new since the last look. Each job settles one hand-off at most.
        """
        handed = self._handed.get(conn_id)
        created = {str(job.get("jobId")): _epoch(job.get("createdAt")) for job in jobs}
        for job_id in sorted(candidates - look.settled_by, key=lambda job_id: created[job_id] or 0.0):
            if not handed:
                break
            at = created[job_id]
            if at is None:
                match = 0 if look.at and job_id not in look.running else None
            else:
                match = next((i for i, made in enumerate(handed) if at >= made - HANDOFF_CLOCK_SKEW), None)
            if match is not None:
                handed.pop(match)
                look.settled_by.add(job_id)
        look.settled_by &= candidates

    def join(self, conn_id: str, since: float, ready_at: float = 0.0) -> asyncio.Future[None]:
        """Wait for a slot of ``conn_id``'s team.

        ``since`` orders the waiters (epoch seconds), and a waiter that cannot act before ``ready_at`` yields
        to one that can.
        """
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiters.setdefault(conn_id, [])
        queue.append(Waiter(since, ready_at, woken))
        queue.sort(key=lambda waiter: waiter.since)
        return woken

    def leave(self, conn_id: str, woken: asyncio.Future[None]) -> None:
        """The waiter whose future is ``woken`` stops waiting (woken, timed out or cancelled)."""
        queue = self._waiters.get(conn_id, [])
        queue[:] = [waiter for waiter in queue if waiter.woken is not woken]
        if not queue:
            self._waiters.pop(conn_id, None)

    def freed(self, conn_id: str) -> bool:
        """A job of ``conn_id`` ended.

        Wake its longest waiter that can act now (else the one that can act soonest); whether one was waiting.
        """
        now = self.clock()
        ready = [waiter for waiter in self._waiters.get(conn_id, []) if not waiter.woken.done()]
        if not ready:
            return False
        chosen = next((waiter for waiter in ready if waiter.ready_at <= now), None) or min(
            ready, key=lambda waiter: waiter.ready_at
        )
        chosen.woken.set_result(None)
        self._handed.setdefault(conn_id, []).append(now)
        return True


SLOTS = SlotBoard()
"""This process's board: in a triggerer, every trigger of this provider shares it."""


@dataclass(frozen=True)
class TeamView:
    """What a process knows of a team when a waiter decides its next step (:meth:`SlotBoard.view`).

    :param looking: fewer of the team's jobs than its limit are followed here: some of its slots are held
        by jobs followed elsewhere, which only looks at the team's jobs see end.
    :param look_under_way: a look has been sent and not answered yet.
    :param full: a submission would meet the team's limit now, as far as this process knows.
    :param next_look: when the next look is due (epoch seconds); ``inf`` when not looking.
    :param counted: while looking, a look answered lately (:meth:`SlotBoard.counted`): the looks decide how
        many waiters wake; default ``False``.
    """

    looking: bool
    look_under_way: bool
    full: bool
    next_look: float
    counted: bool = False


class Act(Enum):
    """What a waiter does next."""

    END = "end"
    """Stop waiting: the deadline passed, or the timer ran out and the team has room (or no known limit)."""
    AWAIT_LOOK = "await_look"
    """Wait for the look under way (its answer decides whether the timer ends the wait), or a hand-off."""
    SLEEP = "sleep"
    """Wait until ``wake`` for a hand-off, then decide again."""


@dataclass(frozen=True)
class Step:
    """A waiter's next step: the act, when it decides again at the latest (epoch seconds), and its timer."""

    act: Act
    wake: float = 0.0
    until: float = 0.0


def _epoch(value: Any) -> float | None:
    """An API date (``2026-12-06T10:31:02.000Z``) as epoch seconds; ``None`` for anything else."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = parse_api_date(value)
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def next_step(now: float, until: float, deadline: float, team: TeamView) -> Step:
    """The next step of a waiter whose timer ends at ``until`` and whose wait ends by ``deadline``.

    A passed timer ends the wait unless the team is known full or lately counted by looks, which wake the
    waiters it has room for (then it decides again in :data:`HANDOFF_RECHECK` seconds), or a look under way is
    about to say so; until then the waiter sleeps to its timer, the deadline or the next look, whichever comes
    first. A hand-off wakes it sooner.
    """
    if now >= deadline:
        return Step(Act.END)
    if now >= until:
        if team.looking and team.look_under_way:
            return Step(Act.AWAIT_LOOK, wake=deadline, until=until)
        if not team.full and not team.counted:
            return Step(Act.END)
        until = min(now + HANDOFF_RECHECK, deadline)
    return Step(Act.SLEEP, wake=min(until, deadline, team.next_look), until=until)


class ScenarioSlotTrigger(BaseTrigger):
    """Wait for a slot of the team's parallel jobs.

    Fire ``{"status": "slot_freed"}`` as soon as a slot of ``scenario_conn_id``'s team frees (one waiter per
    freed slot, the longest first), else ``{"status": "slot_wait_over"}`` at ``wake_at``; at once when that
    has passed (a trigger taken over late by another triggerer). It submits nothing and cancels nothing.

    While this triggerer follows at least ``limit`` jobs of the connection (all the team may run), every
    slot that frees is handed over here: the timer then does not end the wait (a submission it woke would
    only be refused again), up to ``deadline``. While it follows fewer, the triggerer looks at the team's
    newest jobs (``GET /jobs``, see the module's description): a slot free in the team wakes a waiter here
    too, and while looks answer the timer does not end the wait either; it does when none has answered for
    :data:`LOOK_MAX` + :data:`LOOK_AFTER_END` seconds.

    :param wake_at: wall-clock time (epoch seconds) at which the backoff timer ends the wait.
    :param scenario_conn_id: the connection whose team's slot is awaited; default ``scenario_default``.
    :param waiting_since: when the task first met the ceiling (epoch seconds), its place among the
        waiters; default ``wake_at``.
    :param limit: the team's parallel jobs, as the refusal named them; default none (the timer decides).
    :param deadline: the wait ends by this time (epoch seconds) in any case; default ``wake_at``.
    :param handed_back: the task was handed a slot and its submission was refused all the same (another
        triggerer's waiter took it first): the slot no longer counts as taken here; default ``False``.
    :param not_before: no event before this time (epoch seconds), however the wait ends; default none.
        The operator sets it a few seconds after its deferral: an event within seconds of the deferral can
        meet an Airflow scheduler race that fails the try (see
        :data:`airflow_kling.operators.generate.FIRST_POLL_DELAY`).
    """

    def __init__(
        self,
        wake_at: float,
        scenario_conn_id: str = DEFAULT_CONN_ID,
        waiting_since: float | None = None,
        not_before: float | None = None,
        limit: int | None = None,
        deadline: float | None = None,
        handed_back: bool = False,
    ) -> None:
        super().__init__()
        self.handed_back = bool(handed_back)
        self.wake_at = float(wake_at)
        self.scenario_conn_id = scenario_conn_id
        self.waiting_since = self.wake_at if waiting_since is None else float(waiting_since)
        self.not_before = None if not_before is None else float(not_before)
        self.limit = None if limit is None else min(int(limit), MAX_TEAM_LIMIT)
        self.deadline = self.wake_at if deadline is None else float(deadline)

    @override
    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "wake_at": self.wake_at,
                "scenario_conn_id": self.scenario_conn_id,
                "waiting_since": self.waiting_since,
                "not_before": self.not_before,
                "limit": self.limit,
                "deadline": self.deadline,
                "handed_back": self.handed_back,
            },
        )

    @override
    async def run(self) -> AsyncIterator[TriggerEvent]:
        conn_id, limit, board = self.scenario_conn_id, self.limit, SLOTS
        if self.handed_back:
            board.handoff_settled(conn_id)
        woken = board.join(conn_id, self.waiting_since, self.not_before or 0.0)
        until = self.wake_at
        try:
            while not woken.done():
                if limit is not None and board.looking(conn_id, limit):
                    board.look_if_due(conn_id, limit, self._recent_jobs)
                now = board.clock()
                step = next_step(now, until, self.deadline, board.view(conn_id, limit))
                if step.act is Act.END:
                    break
                until = step.until
                look = board.look_under_way(conn_id) if step.act is Act.AWAIT_LOOK else None
                await asyncio.wait({woken, *([look] if look else [])}, timeout=max(0.0, step.wake - now))
        finally:
            board.leave(conn_id, woken)
        status = SLOT_FREED if woken.done() else SLOT_WAIT_OVER
        if self.not_before is not None:
            await asyncio.sleep(max(0.0, self.not_before - board.clock()))
        yield TriggerEvent({"status": status, "wake_at": self.wake_at})

    async def _recent_jobs(self) -> list[dict[str, Any]]:
        from airflow_kling.hooks.scenario_async import ScenarioAsyncHook, session_lease

        async with session_lease():
            return await ScenarioAsyncHook(self.scenario_conn_id).recent_jobs()
