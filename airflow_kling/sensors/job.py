"""Wait for a Scenario job submitted elsewhere: another DAG, ``wait_for_completion=False``, a web app."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from typing_extensions import override

from airflow_kling.exceptions import ScenarioError, ScenarioJobError
from airflow_kling.jobs.events import successful_job
from airflow_kling.jobs.polling import JobProgress, is_transient
from airflow_kling.jobs.status import is_terminal
from airflow_kling.jobs.xcoms import JobResult, job_result
from airflow_kling.operators.base import DEFAULT_CONN_ID, ScenarioHookMixin
from airflow_kling.version_compat import AirflowFailException, AirflowSkipException, conf

if TYPE_CHECKING:
    from airflow.sdk import Context


class ScenarioJobSensor(ScenarioHookMixin, BaseSensorOperator):
    """Succeed when a Scenario job succeeds; fail (or skip, with ``soft_fail``) when it fails or is canceled.

    Returns the same ``{"job_id", "status", "asset_ids", "creative_units_cost"}`` as the operators.
    Passing API errors (unreachable, 429, 5xx) count as "not yet", never as a failure.

    :param job_id: the Scenario job id. Templated.
    :param scenario_conn_id: the Airflow connection id; default ``scenario_default``.
    :param deferrable: wait in the triggerer; default ``[operators] default_deferrable``.
    :param project_id: the project the job belongs to, overriding the connection's; default none.
    :param cancel_on_exit: cancel the job when the deferred sensor times out or is killed; default
        ``False``: a sensor watches a job that someone else submitted and pays for, and leaves it alone.
        The synchronous sensor (poke or reschedule mode) never cancels.
    :param kwargs: ``poke_interval`` (seconds, default 60), ``timeout`` (seconds, default 7 days),
        ``mode``, ``soft_fail`` and the rest of ``BaseSensorOperator``.
    """

    template_fields: Sequence[str] = ("job_id", "project_id")
    ui_color = "#f3e8ff"

    def __init__(
        self,
        *,
        job_id: str,
        scenario_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        project_id: str | None = None,
        cancel_on_exit: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cancel_on_exit = cancel_on_exit
        self.job_id = job_id
        self.scenario_conn_id = scenario_conn_id
        self.deferrable = deferrable
        self.project_id = project_id

    @cached_property
    def _progress(self) -> JobProgress:
        return JobProgress(self.job_id)

    @override
    def poke(self, context: Context) -> bool | PokeReturnValue:
        try:
            job = self.hook.get_job(self.job_id)
        except ScenarioError as error:
            if is_transient(error):
                self.log.warning("Polling job %s failed (%s); trying again next poke", self.job_id, error)
                return False
            raise
        for line in self._progress.update(job):
            self.log.info(line)
        if not is_terminal(job["status"]):
            return False
        return PokeReturnValue(is_done=True, xcom_value=job_result(self._outcome(job)))

    @override
    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        try:
            first = self.poke(context)  # no deferral for a job that has already ended
        except AirflowFailException as failure:
            if self.soft_fail or self.never_fail:
                raise AirflowSkipException(
                    f"Skipping ({'soft_fail' if self.soft_fail else 'never_fail'}): {failure}"
                ) from failure
            raise
        if isinstance(first, PokeReturnValue):
            return first.xcom_value
        from airflow_kling.triggers.job import ScenarioJobTrigger

        timeout_at = time.time() + float(self.timeout)
        self.defer(
            trigger=ScenarioJobTrigger(
                job_id=self.job_id,
                scenario_conn_id=self.scenario_conn_id,
                poll_interval=float(self.poke_interval),
                timeout_at=timeout_at,
                project_id=self.project_id,
                cancel_on_exit=self.cancel_on_exit,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout) + 300),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> JobResult:
        """Resume after the trigger: only a well-formed ``success`` event succeeds."""
        return job_result(self._outcome(event))

    def _outcome(self, news: Any) -> dict[str, Any]:
        """The succeeded job; any other ending fails the sensor (or skips it, with ``soft_fail``)."""
        try:
            return successful_job(news, self.log)
        except ScenarioJobError as error:
            # soft_fail replaces the exception with a generic skip message: say here why the job is over.
            self.log.error(str(error))
            raise AirflowFailException(str(error)) from None
