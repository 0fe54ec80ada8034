"""The deferrable wait for a Scenario job: polls ``GET /jobs/{jobId}`` in the triggerer until the job ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from typing_extensions import override

from airflow_kling.exceptions import ScenarioError
from airflow_kling.hooks.connection import DEFAULT_CONN_ID
from airflow_kling.jobs.events import event_job, job_event
from airflow_kling.jobs.polling import STRETCH, JobWatch
from airflow_kling.jobs.status import ending_message, is_terminal
from airflow_kling.triggers.slot import SLOTS, Following
from airflow_kling.version_compat import AIRFLOW_V_3_3_PLUS

CANCEL_TIMEOUT = 30.0
"""Seconds allowed for the best-effort cancel of a job at its deadline or when the task is killed."""


async def outlast_cancellation(work: Coroutine[Any, Any, None], log: Any) -> None:
    """Await ``work`` to its end although the awaiting task is cancelled again meanwhile.

    The triggerer repeats its cancel of a trigger at every state sync (about each second) until the trigger
    returns, which would cut off a cancel request before it is sent. ``work`` must bound its own time; an
    error in it is logged to ``log``, not raised (it would replace the cancellation being handled).
    """
    task = asyncio.ensure_future(work)
    while True:
        try:
            await asyncio.shield(task)
            return
        except asyncio.CancelledError:
            if task.done():  # the work itself was cancelled (the loop is closing)
                raise
        except Exception:
            log.warning("Ending a cancelled trigger failed", exc_info=True)
            return


class LogOnFirstLine:
    """A trigger's logger, made when a first line is written: most polls write none, and a logger costs more.

    It writes the two levels :class:`~airflow_kling.jobs.polling.JobWatch` writes, ``info`` and ``warning``.

    :param owner: what has the logger, as its ``log`` attribute (a trigger).
    """

    __slots__ = ("owner",)

    def __init__(self, owner: Any) -> None:
        self.owner = owner

    def info(self, *args: Any, **kwargs: Any) -> None:
        """``owner.log.info(...)``."""
        self.owner.log.info(*args, **kwargs)

    def warning(self, *args: Any, **kwargs: Any) -> None:
        """``owner.log.warning(...)``."""
        self.owner.log.warning(*args, **kwargs)


class ScenarioJobTrigger(BaseTrigger):
    """Wait for a Scenario job to end, holding no worker slot.

    It only ever reads (``GET /v1/jobs/{jobId}``), so a trigger restarted on another triggerer repeats
    nothing. When its job ends it hands the job's slot to a submission of the same connection waiting in
    this triggerer (:class:`~airflow_kling.triggers.slot.ScenarioSlotTrigger`). Passing errors (unreachable API, 429, 5xx) are waited through with backoff; only a final
    error or the deadline ends it, with a ``timeout`` event at ``timeout_at`` (Airflow enforces no
    ``execution_timeout`` while a task is deferred).

    It cancels the job only with ``cancel_on_exit=True``, which the operators that submitted (and pay for)
    the job set: then at its deadline and when a user kills the deferred task. A watcher of someone else's
    job (:class:`~airflow_kling.sensors.job.ScenarioJobSensor`) leaves it alone.

    Fires exactly one event: ``{"status": "success"|"failure"|"canceled"|"timeout"|"error", "job_id",
    "job" (the last job object seen, or ``None``), "message"}``.

    :param job_id: the Scenario job id.
    :param scenario_conn_id: the Airflow connection id; default ``scenario_default``.
    :param poll_interval: seconds between polls; default 10.
    :param timeout_at: wall-clock deadline as epoch seconds, or ``None`` for none.
    :param project_id: the project the job belongs to, overriding the connection's; default none.
    :param max_poll_interval: seconds the interval may stretch to while a long job is far from its end
        (see :func:`airflow_kling.jobs.polling.next_poll_delay`); default 3 x ``poll_interval``.
    :param cancel_on_exit: cancel the job at the deadline and when the task is killed; default ``False``.
    :param first_poll_at: wall-clock time (epoch seconds) of the first poll; default at once. A trigger
        started after it (on another triggerer) polls at once.
    """

    def __init__(
        self,
        job_id: str,
        scenario_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 10.0,
        timeout_at: float | None = None,
        project_id: str | None = None,
        max_poll_interval: float | None = None,
        cancel_on_exit: bool = False,
        first_poll_at: float | None = None,
    ) -> None:
        super().__init__()
        self.job_id = job_id
        self.scenario_conn_id = scenario_conn_id
        self.poll_interval = float(poll_interval)
        self.timeout_at = None if timeout_at is None else float(timeout_at)
        self.project_id = project_id
        self.max_poll_interval = (
            float(max_poll_interval) if max_poll_interval else self.poll_interval * STRETCH
        )
        self.cancel_on_exit = bool(cancel_on_exit)
        self.first_poll_at = None if first_poll_at is None else float(first_poll_at)

    @override
    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_id": self.job_id,
                "scenario_conn_id": self.scenario_conn_id,
                "poll_interval": self.poll_interval,
                "timeout_at": self.timeout_at,
                "project_id": self.project_id,
                "max_poll_interval": self.max_poll_interval,
                "cancel_on_exit": self.cancel_on_exit,
                "first_poll_at": self.first_poll_at,
            },
        )

    def _hook(self) -> Any:
        from airflow_kling.hooks.scenario_async import ScenarioAsyncHook

        return ScenarioAsyncHook(self.scenario_conn_id, project_id=self.project_id)

    def _seconds_left(self) -> float | None:
        return None if self.timeout_at is None else self.timeout_at - time.time()

    @override
    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_kling.hooks.scenario_async import session_lease

        try:
            with SLOTS.following(self.scenario_conn_id, self.job_id) as follow:
                async with session_lease():
                    event = await self._follow(follow)
            yield event
        except asyncio.CancelledError:
            # Airflow 3.3+ calls on_kill() when a user ends the task. Before, a cancelled trigger asks what
            # became of its task: a triggerer that stops or hands the trigger over leaves it deferred.
            if not AIRFLOW_V_3_3_PLUS:
                await self._end_with_its_task()
            raise

    async def _follow(self, follow: Following) -> TriggerEvent:
        """Poll the job until it ends or the deadline passes: the trigger's one event."""
        hook = self._hook()
        watch = JobWatch(
            self.job_id, self.poll_interval, self.max_poll_interval, LogOnFirstLine(self), in_triggerer=True
        )
        job: dict[str, Any] | None = None
        # A payer's trigger knows its job ran (it was just submitted); a watcher hands a slot over only for a
        # job it saw running, so a sensor of a job that had already ended frees no slot it never held.
        saw_running = self.cancel_on_exit
        if self.first_poll_at is not None:
            left = self._seconds_left()
            wait = self.first_poll_at - time.time()
            await asyncio.sleep(max(0.0, wait if left is None else min(wait, left)))
        while True:
            left = self._seconds_left()
            if left is not None and left <= 0:
                return TriggerEvent(await self._timed_out(hook, job))
            try:
                job = await hook.get_job(self.job_id)
                delay = watch.seen(job)
            except ScenarioError as error:
                try:
                    delay = watch.failed(error)
                except ScenarioError:
                    return TriggerEvent(
                        job_event("error", self.job_id, job, f"Cannot follow job {self.job_id}: {error}")
                    )
            if delay is None:
                assert job is not None
                if saw_running and job.get("jobType", "custom") == "custom":  # the ceiling counts custom jobs
                    follow.ended()  # its slot goes to a submission waiting in this triggerer
                message = ending_message(job)
                return TriggerEvent(
                    job_event(job["status"], self.job_id, job, message, statuses=watch.progress.unsaid())
                )
            saw_running = saw_running or job is not None  # seen, and not ended (it would have returned)
            # Kept through the sleep as a timeout or error event would carry it: not the job's history and
            # inputs, which a triggerer of thousands of jobs would otherwise hold and sweep (full collections).
            job = None if job is None else event_job(job)
            left = self._seconds_left()
            await asyncio.sleep(delay if left is None else max(0.0, min(delay, left)))

    async def on_kill(self) -> None:
        """With ``cancel_on_exit``.

        Cancel the remote job when a user marked the deferred task failed, cleared it or killed it (called by
        the triggerer on Airflow 3.3+). First it asks what became of its task instance, as :meth:`run` does
        before 3.3: a triggerer that stalled past the health threshold and came back also calls this for the
        triggers another triggerer took over (apache/airflow PR #73454), and a task still deferred there is
        not this triggerer's to end.
        """
        await self._end_with_its_task()

    async def _end_with_its_task(self) -> None:
        """The one way a killed task's job is cancelled, on every Airflow line.

        With ``cancel_on_exit``, when the task instance has left ``deferred`` and the job has not ended; to
        its end however often the triggerer cancels this trigger meanwhile.
        """
        if self.cancel_on_exit:
            await outlast_cancellation(self._cancel_if_task_ended(), self.log)

    async def _cancel_if_task_ended(self) -> None:
        if await self._task_was_ended():
            await self._cancel_killed_job()

    async def _cancel_killed_job(self) -> None:
        """Cancel the job, unless it has ended.

        A stalled triggerer that comes back after another one saw the job end (and the task went on, or
        finished) has nothing to cancel, and asks nothing.
        """
        from airflow_kling.hooks.scenario_async import session_lease

        async with session_lease():
            hook = self._hook()
            try:
                job = await asyncio.wait_for(hook.get_job(self.job_id), CANCEL_TIMEOUT)
            except (ScenarioError, TimeoutError) as error:
                self.log.warning("Could not read Scenario job %s: %s; it is left running", self.job_id, error)
                return
            if is_terminal(str(job.get("status"))):
                self.log.info(
                    "Scenario job %s already ended (%s): nothing to cancel", self.job_id, job["status"]
                )
                return
            await self._cancel(hook, "the task was killed")

    async def _task_was_ended(self) -> bool:
        """Whether this trigger's task instance has left ``deferred`` (a user marked, cleared or killed it).

        Any doubt (no task instance known, the lookup failed) answers no, and says why: the job is not
        cancelled.
        """
        ti = getattr(self, "task_instance", None)
        if ti is None:
            self.log.warning(
                "Trigger of job %s cancelled with no task instance known: job left running", self.job_id
            )
            return False
        try:
            state = await asyncio.wait_for(self._read_task_state(ti), CANCEL_TIMEOUT)
        except Exception as error:  # the triggerer may be going away: never cancel on a guess
            self.log.warning(
                "Could not read the state of task %s: %s; job %s left running", ti.task_id, error, self.job_id
            )
            return False
        self.log.info("Trigger of job %s cancelled; its task is %s", self.job_id, state)
        # up_for_retry: its next try follows the job (no user sets it on a deferred task)
        return state is not None and state not in ("deferred", "up_for_retry")

    async def _read_task_state(self, ti: Any) -> str | None:
        """The task instance's state as Airflow's API server has it now (``None`` when it has none)."""
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
        from asgiref.sync import sync_to_async

        states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
            dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id], map_index=ti.map_index
        )
        by_task = states.get(ti.run_id) or {}
        state = by_task.get(ti.task_id, by_task.get(f"{ti.task_id}_{ti.map_index}"))
        return None if state is None else str(getattr(state, "value", state))

    async def _timed_out(self, hook: Any, job: dict[str, Any] | None) -> dict[str, Any]:
        message = f"Scenario job {self.job_id} did not finish before its deadline"
        if not self.cancel_on_exit:
            return job_event(
                "timeout", self.job_id, job, message + "; it was left running (not this task's to cancel)"
            )
        cancelled = await self._cancel(hook, "its deadline passed")
        message += "; it was cancelled" if cancelled else "; cancelling it was refused or failed"
        return job_event("timeout", self.job_id, job, message)

    async def _cancel(self, hook: Any, why: str) -> bool:
        try:
            await asyncio.wait_for(hook.cancel_job(self.job_id), CANCEL_TIMEOUT)
        except (ScenarioError, TimeoutError) as error:
            self.log.warning("Could not cancel Scenario job %s (%s): %s", self.job_id, why, error)
            return False
        self.log.info("Cancelled Scenario job %s: %s", self.job_id, why)
        return True
