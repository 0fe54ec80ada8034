"""The deferrable wait for a slot of the team's parallel jobs: a submission refused at the team's limit
waits in the triggerer, holding no worker slot and no try, until its backoff timer runs out or, sooner, a
job of the same connection ends in the same triggerer and hands its slot over.

The hand-off is in-process: :data:`SLOTS` pairs the job triggers that see a job end with the slot
triggers that wait, one freed slot for the longest waiter. Waiters in another triggerer, or jobs followed
elsewhere, fall back to the backoff timer; while one triggerer follows all the team's running jobs, only a
hand-off ends a wait there, up to the operator's ``timeout``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_kling.hooks.connection import DEFAULT_CONN_ID

SLOT_FREED = "slot_freed"
"""The slot trigger's event status when a job of its connection ended in this triggerer."""
SLOT_WAIT_OVER = "slot_wait_over"
"""The slot trigger's event status when its backoff timer ran out."""
HANDOFF_RECHECK = 5.0
"""Seconds between two looks at whether this triggerer still follows every running job of the team."""
HANDOFF_GRACE = 60.0
"""Seconds a slot handed to a waiter counts as taken, until the job submitted into it is followed here."""


class SlotBoard:
    """The slot waiters of one process, by Scenario connection id, oldest first.

    A job trigger that sees its job end calls :meth:`freed`, which wakes the waiter that has waited
    longest (by the time its task was first refused), so a batch's clips get the slots in the order they
    met the ceiling. A slot freed while no one waits is not kept: another client may have taken it.
    """

    def __init__(self) -> None:
        self._waiters: dict[str, list[tuple[float, float, asyncio.Future[None]]]] = {}
        self._followed: dict[str, int] = {}
        self._handed: dict[str, list[float]] = {}  # slots handed over, by when they stop counting

    @contextmanager
    def following(self, conn_id: str) -> Iterator[Callable[[], None]]:
        """While a job trigger of ``conn_id`` follows its job in this process (most likely the job that was
        submitted into a slot handed over here: that hand-off is done). Gives the function the trigger calls
        when the job ends, before its event: the job stops counting and its slot goes to a waiter
        (:meth:`freed`); calling it again does nothing."""
        handed = self._handed.get(conn_id)
        if handed:
            handed.pop(0)
        self._followed[conn_id] = self._followed.get(conn_id, 0) + 1
        done = False

        def stop() -> None:
            nonlocal done
            if not done:
                done = True
                self._followed[conn_id] -= 1
                if not self._followed[conn_id]:
                    del self._followed[conn_id]

        def ended() -> None:
            if not done:
                stop()
                self.freed(conn_id)

        try:
            yield ended
        finally:
            stop()

    def followed(self, conn_id: str) -> int:
        """How many jobs of ``conn_id`` this process follows now, counting the slots it handed over in the
        last :data:`HANDOFF_GRACE` seconds whose jobs it does not follow yet."""
        now = time.time()
        handed = self._handed.get(conn_id, [])
        handed[:] = [until for until in handed if until > now]
        return self._followed.get(conn_id, 0) + len(handed)

    def join(self, conn_id: str, since: float, ready_at: float = 0.0) -> asyncio.Future[None]:
        """Wait for a slot of ``conn_id``'s team; ``since`` orders the waiters (epoch seconds), and a waiter
        that cannot act before ``ready_at`` yields to one that can."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiters.setdefault(conn_id, [])
        queue.append((since, ready_at, waiter))
        queue.sort(key=lambda entry: entry[0])
        return waiter

    def leave(self, conn_id: str, waiter: asyncio.Future[None]) -> None:
        queue = self._waiters.get(conn_id, [])
        queue[:] = [entry for entry in queue if entry[2] is not waiter]
        if not queue:
            self._waiters.pop(conn_id, None)

    def freed(self, conn_id: str) -> bool:
        """A job of ``conn_id`` ended: wake its longest waiter that can act now (else the one that can act
        soonest); whether one was waiting."""
        now = time.time()
        ready = [entry for entry in self._waiters.get(conn_id, []) if not entry[2].done()]
        if not ready:
            return False
        chosen = next((entry for entry in ready if entry[1] <= now), None) or min(ready, key=lambda e: e[1])
        chosen[2].set_result(None)
        self._handed.setdefault(conn_id, []).append(now + HANDOFF_GRACE)
        return True


SLOTS = SlotBoard()
"""This process's board: in a triggerer, every trigger of this provider shares it."""


class ScenarioSlotTrigger(BaseTrigger):
    """Wait for a slot of the team's parallel jobs: fire ``{"status": "slot_freed"}`` as soon as a job of
    ``scenario_conn_id`` ends in this triggerer (one waiter per ended job, the longest first), else
    ``{"status": "slot_wait_over"}`` at ``wake_at``; at once when that has passed (a trigger taken over
    late by another triggerer). It makes no request and cancels nothing.

    While this triggerer follows at least ``limit`` jobs of the connection (all the team may run), every
    slot that frees is handed over here: the timer then does not end the wait (a submission it woke would
    only be refused again), up to ``deadline``.

    :param wake_at: wall-clock time (epoch seconds) at which the backoff timer ends the wait.
    :param scenario_conn_id: the connection whose team's slot is awaited; default ``scenario_default``.
    :param waiting_since: when the task first met the ceiling (epoch seconds), its place among the
        waiters; default ``wake_at``.
    :param limit: the team's parallel jobs, as the refusal named them; default none (the timer decides).
    :param deadline: the wait ends by this time (epoch seconds) in any case; default ``wake_at``.
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
    ) -> None:
        super().__init__()
        self.wake_at = float(wake_at)
        self.scenario_conn_id = scenario_conn_id
        self.waiting_since = self.wake_at if waiting_since is None else float(waiting_since)
        self.not_before = None if not_before is None else float(not_before)
        self.limit = None if limit is None else int(limit)
        self.deadline = self.wake_at if deadline is None else float(deadline)

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
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        waiter = SLOTS.join(self.scenario_conn_id, self.waiting_since, self.not_before or 0.0)
        until = self.wake_at
        try:
            while not waiter.done():
                await asyncio.wait({waiter}, timeout=max(0.0, until - time.time()))
                now = time.time()
                if waiter.done() or now >= self.deadline or not self._all_jobs_followed_here():
                    break
                until = min(now + HANDOFF_RECHECK, self.deadline)
        finally:
            SLOTS.leave(self.scenario_conn_id, waiter)
        status = SLOT_FREED if waiter.done() else SLOT_WAIT_OVER
        if self.not_before is not None:
            await asyncio.sleep(max(0.0, self.not_before - time.time()))
        yield TriggerEvent({"status": status, "wake_at": self.wake_at})

    def _all_jobs_followed_here(self) -> bool:
        return self.limit is not None and SLOTS.followed(self.scenario_conn_id) >= self.limit
