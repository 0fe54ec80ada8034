"""What every waiter on a job shares (the deferrable trigger, the synchronous operator, the sensor).

Which errors are passing, how long to wait between polls, and what to log when a job moves.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from airflow_kling.api.retry import is_retryable_status
from airflow_kling.exceptions import ScenarioAPIError, ScenarioError, ScenarioTransportError
from airflow_kling.jobs.status import is_terminal

MAX_ERROR_BACKOFF = 60.0
"""Seconds at most between polls while the API keeps failing."""


def is_transient(error: ScenarioError) -> bool:
    """Whether an error may pass by itself (unreachable API, 408, 409, 429, 5xx).

    A waiter keeps waiting through it instead of ending.
    """
    if isinstance(error, ScenarioTransportError):
        return True
    return isinstance(error, ScenarioAPIError) and is_retryable_status(error.status)


def error_backoff(failures: int, poll_interval: float) -> float:
    """Seconds to wait after ``failures`` (1, 2, ...) failed polls in a row, each already retried by the hook.

    The poll interval, doubling up to :data:`MAX_ERROR_BACKOFF` (or the interval, if longer).
    """
    return min(poll_interval * 2.0 ** max(failures - 1, 0), max(MAX_ERROR_BACKOFF, poll_interval))


PROGRESS_LOG_SECONDS = 30.0
"""Seconds at least between two log lines of a job that goes on (its end is logged at once)."""


STATUS_WORD = re.compile(r"^[a-z][a-z-]{0,30}$")
"""A status as the API names them (``warming-up``): anything else in a job's history is not logged."""
HISTORY_LIMIT = 20
"""Entries of a job's ``statusHistory`` read at most per poll."""
HISTORY_TIME = re.compile(r"^\d{4}-\d\d-\d\dT(\d\d:\d\d:\d\d)")


class JobProgress:
    """Decides which lines a job's polls are worth.

    In a worker (the default), one line for each status the job reaches (those it passed between two polls
    too, read from its ``statusHistory``), and while its status stays, a change of progress at most every
    ``min_interval`` seconds. In a triggerer (``batched``), which follows thousands of jobs and pays more for a
    line than for a poll, one line at most every ``min_interval`` seconds that says every status reached since
    the last one; what is not said by the job's end is :meth:`unsaid`, carried by the trigger's event for the
    woken task to log.

    :param min_interval: seconds between two lines; default :data:`PROGRESS_LOG_SECONDS`.
    :param batched: the triggerer's way; default ``False``.
    :param clock: monotonic seconds; tests inject one.
    """

    def __init__(
        self,
        job_id: str,
        min_interval: float = PROGRESS_LOG_SECONDS,
        *,
        batched: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job_id = job_id
        self.min_interval = min_interval
        self.batched = batched
        self.clock = clock
        self.status: str | None = None
        self.percent: int | None = None
        self.logged_at: float | None = clock() if batched else None
        self.history_read = 0
        self._unsaid: tuple[str, ...] = ()  # a tuple of texts: the collector does not track it

    def update(self, job: dict[str, Any], *, with_end: bool = True) -> list[str]:
        """The lines to log for this poll of the job, oldest first (often none).

        :param with_end: include the line of a job that has ended (``False``: its caller says the end).
        """
        status = str(job.get("status"))
        percent = round(float(job.get("progress") or 0.0) * 100)
        history = job.get("statusHistory")
        # most polls: nothing passed since the last one, and nothing is made for it
        passed = (
            self._passed(history, status)
            if type(history) is list and len(history) > self.history_read
            else ()
        )
        if self.batched:
            if not passed and status == self.status and percent == self.percent:
                return []  # nothing moved: no line, nothing kept
            return self._batch(job, status, percent, passed)
        lines = [f"Scenario job {self.job_id}: {step}" for step in passed]
        if status == self.status and percent == self.percent:
            return lines
        now = self.clock()
        recent = self.logged_at is not None and now - self.logged_at < self.min_interval
        ended = is_terminal(status)
        if status == self.status and recent and not ended:
            return lines
        self.status, self.percent, self.logged_at = status, percent, now
        if ended and not with_end:
            return lines
        return [*lines, f"Scenario job {self.job_id}: {status} ({percent}%)"]

    def unsaid(self) -> list[str]:
        """The statuses reached but not logged yet (``warming-up at 10:31:02``), oldest first; batched only."""
        return list(self._unsaid)

    def _batch(self, job: dict[str, Any], status: str, percent: int, passed: tuple[str, ...]) -> list[str]:
        reached = passed
        ended = is_terminal(status)
        if status != self.status and not ended and STATUS_WORD.fullmatch(status):
            reached = (*passed, _reached_at(job, status))
        if reached:  # what is kept across polls is made anew only when something happened
            self._unsaid = (*self._unsaid, *reached)[-HISTORY_LIMIT:]
        moved = status != self.status or percent != self.percent
        self.status, self.percent = status, percent
        now = self.clock()
        if ended or not moved or (self.logged_at is not None and now - self.logged_at < self.min_interval):
            return []
        steps = list(self._unsaid)
        if steps and steps[-1].partition(" at ")[0] == status:  # the status now, said with its percent
            steps[-1] = f"{steps[-1]} ({percent}%)"
        else:
            steps.append(f"{status} ({percent}%)")
        self._unsaid, self.logged_at = (), now
        return [f"Scenario job {self.job_id}: {', '.join(steps)}"]

    def _passed(self, history: list[Any], status: str) -> tuple[str, ...]:
        """The statuses the job reached since the last poll, from its ``statusHistory``, each with its time.

        Neither ``status`` nor the one last said is among them; each reads as ``queued at 10:31:02``.
        """
        new = history[self.history_read : self.history_read + HISTORY_LIMIT]
        self.history_read = len(history)
        passed = []
        for step in new:
            reached = step.get("status") if isinstance(step, dict) else None
            if (
                not isinstance(reached, str)
                or not STATUS_WORD.fullmatch(reached)
                or reached in (status, self.status)
            ):
                continue
            passed.append(_said_at(reached, step.get("date")))
        return tuple(passed)


def _reached_at(job: dict[str, Any], status: str) -> str:
    """``status at HH:MM:SS`` from the job's latest history entries, else ``status``."""
    history = job.get("statusHistory")
    for step in reversed(history[-HISTORY_LIMIT:] if isinstance(history, list) else []):
        if isinstance(step, dict) and step.get("status") == status:
            return _said_at(status, step.get("date"))
    return status


def _said_at(status: str, date: Any) -> str:
    """``status at HH:MM:SS`` when ``date`` is a history entry's date, else ``status``."""
    at = HISTORY_TIME.match(date) if isinstance(date, str) else None
    return f"{status} at {at.group(1)}" if at else status


STRETCH = 3.0
"""How far a long job's poll interval may stretch by default: up to this many times ``poll_interval``."""


def next_poll_delay(poll_interval: float, max_poll_interval: float, waited: float, progress: float) -> float:
    """Seconds until the next poll of a job that has run ``waited`` seconds and reports ``progress`` (0-1).

    ``poll_interval`` is the floor. A long job is polled less often, up to ``max_poll_interval``: about half
    the time its progress says is left, so polls thin out in the middle of a job and come back to the floor
    near its end, where its success is waited for.
    """
    if max_poll_interval <= poll_interval:
        return poll_interval
    # Queued or warming up (no progress yet): no rate to go by, so stretch with the time waited.
    wanted = waited / 4 if progress <= 0.0 else waited * (1.0 - min(progress, 1.0)) / progress / 2
    return min(max_poll_interval, max(poll_interval, wanted))


FINAL_POLL_MIN = 0.5
"""Seconds at least before a poll aimed at a job's predicted end."""
FINAL_POLL_MARGIN = 0.2
"""Seconds after the predicted end at which that poll is aimed."""


def predicted_end_delay(
    previous: tuple[float, float] | None, now: float, progress: float, delay: float
) -> float:
    """Seconds until the next poll: ``delay``, or less when the job's progress says it ends sooner.

    Progress is measured since the ``previous`` poll (its time and progress); the next poll is then aimed just
    after that end (:data:`FINAL_POLL_MARGIN`), at least :data:`FINAL_POLL_MIN` away. A job that made no
    progress keeps ``delay``. The end is seen within a fraction of a second instead of half a poll interval
    later on average, with no more polls: the one aimed at the end replaces the one that would have come after
    it.
    """
    if previous is None or now <= previous[0] or progress <= previous[1]:
        return delay
    rate = (progress - previous[1]) / (now - previous[0])
    return min(delay, max(FINAL_POLL_MIN, (1.0 - progress) / rate + FINAL_POLL_MARGIN))


class JobWatch:
    """One wait for a job, shared by the trigger (async) and the synchronous operator.

    It logs each move of the job, counts failed polls in a row, and says how long to wait before the next poll
    (aimed at the job's predicted end when that comes first: :func:`predicted_end_delay`).

    :param log: where moves and passing errors are logged (the task's or the trigger's logger).
    :param in_triggerer: the trigger's way (default ``False``): lines batched (see :class:`JobProgress`) and
        the job's end not logged, as the triggerer logs the event it fires, with its message, in the same log
        (a line costs a triggerer more than a poll).
    :param clock: monotonic seconds; tests inject one.
    """

    def __init__(
        self,
        job_id: str,
        poll_interval: float,
        max_poll_interval: float,
        log: Any,
        *,
        in_triggerer: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job_id = job_id
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.log = log
        self.in_triggerer = in_triggerer
        self.clock = clock
        self.progress = JobProgress(job_id, batched=in_triggerer, clock=clock)
        self.failures = 0
        self.started = clock()
        self.last: tuple[float, float] | None = None  # time and progress of the last poll

    def seen(self, job: dict[str, Any]) -> float | None:
        """Record a polled job: ``None`` when it has ended, else the seconds until the next poll."""
        self.failures = 0
        for line in self.progress.update(job, with_end=not self.in_triggerer):
            self.log.info(line)
        if is_terminal(str(job.get("status"))):
            return None
        now, progress = self.clock(), float(job.get("progress") or 0)
        delay = next_poll_delay(self.poll_interval, self.max_poll_interval, now - self.started, progress)
        delay = predicted_end_delay(self.last, now, progress, delay)
        self.last = (now, progress)
        return delay

    def failed(self, error: ScenarioError) -> float:
        """Record a failed poll: the seconds until the next one, or ``error`` raised again when it is final."""
        if not is_transient(error):
            raise error
        self.failures += 1
        delay = error_backoff(self.failures, self.poll_interval)
        self.log.warning("Polling job %s failed (%s); next poll in %.1f s", self.job_id, error, delay)
        return delay


SLOT_WAIT_FIRST = 5.0
"""Seconds before the first new submission after the team's parallel-job limit refused one."""
SLOT_WAIT_MAX = 60.0
"""Seconds at most between two submissions while the team stays at its limit."""


def slot_wait_delay(waits: int, jitter: Callable[[], float] | None = None) -> float:
    """Seconds to wait for a slot of the team's parallel jobs after ``waits`` (0, 1, ...) earlier waits.

    :data:`SLOT_WAIT_FIRST` doubling up to :data:`SLOT_WAIT_MAX`, each cut by up to half at random (so that
    the tasks of a batch, refused together, do not all come back together).
    """
    import random

    base = min(SLOT_WAIT_FIRST * 2.0**waits, SLOT_WAIT_MAX)
    return base * (1 - 0.5 * (jitter or random.random)())
