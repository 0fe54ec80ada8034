"""The operator that runs any Scenario model (``POST /generate/custom/{modelId}``) and waits for its job."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator
from typing_extensions import override

from airflow_kling.api.retry import REFUSED_SUBMIT_STATUSES
from airflow_kling.exceptions import (
    ScenarioAPIError,
    ScenarioError,
    ScenarioJobError,
    ScenarioTeamLimitError,
    ScenarioValidationError,
)
from airflow_kling.jobs.events import successful_job
from airflow_kling.jobs.status import (
    JobStatus,
    is_permanent_failure,
    is_terminal,
)
from airflow_kling.jobs.submission import DEFAULT_SETTLE_SECONDS, SubmitRecord
from airflow_kling.jobs.xcoms import (
    CONN_ID_XCOM_KEY,
    JOB_ID_XCOM_KEY,
    JOB_URL_XCOM_KEY,
    MODEL_ID_XCOM_KEY,
    JobResult,
    job_result,
)
from airflow_kling.observability import metrics
from airflow_kling.operators.base import DEFAULT_CONN_ID, ScenarioHookMixin, non_negative_number
from airflow_kling.operators.failures import invalid_input_fails_task
from airflow_kling.operators.links import ScenarioJobLink
from airflow_kling.version_compat import AirflowFailException, conf, xcoms_cleared_at_start

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_kling.jobs.submission import Submission
    from airflow_kling.models.spec import ModelSpec

STATE_KEY = "scenario_job"
"""``task_state_store`` key under which a try records the job it submitted."""
DEFERRAL_GRACE = 300.0
"""Seconds Airflow waits past the trigger's own deadline before failing a deferral that never fired."""
FIRST_POLL_DELAY = 10.0
"""Seconds after a deferral before its trigger may fire (the operator has just read the job). An event
within seconds of the deferral can meet an Airflow scheduler race: the deferring try's executor event
("success") read after the trigger's event has re-queued the task, which then fails the try (apache/airflow
#67287, #72716). On 2 busy cores a scheduler loop was seen to take 5.5 s to read that event."""


class TaskStateRecords:
    """A submission's record in the task's ``task_state_store``, which outlives a try (Airflow 3.3+)."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def load(self) -> SubmitRecord | None:
        """The record of an earlier try, if any."""
        return SubmitRecord.from_json(self._store.get(STATE_KEY))

    def save(self, record: SubmitRecord) -> None:
        """Write ``record`` down for the later tries."""
        self._store.set(STATE_KEY, record.to_json())


class ScenarioGenerateOperator(ScenarioHookMixin, BaseOperator):
    """Run any Scenario custom model (``POST /generate/custom/{modelId}``) and wait for its job.

    Submits in the worker so that one task pays for one job, in every failure path (see
    :mod:`airflow_kling.jobs.submission`): the intent is recorded in the task's ``task_state_store`` before the
    ``POST`` and the job id after it, so a retry, or a try after a dead worker, follows that job; a
    submission whose answer was lost is looked for, and adopted, before anything is sent again. Then it
    waits: deferred to :class:`~airflow_kling.triggers.job.ScenarioJobTrigger` (no worker slot held) or by
    polling in the worker. Returns ``{"job_id", "status", "asset_ids", "creative_units_cost"}``.

    Before the first paid request the inputs are checked against the model's live descriptor
    (``GET /models/{modelId}``, asked once per process and model every 10 minutes): required inputs, types,
    allowed values, ranges, lengths, and the kind, size and duration of file inputs' assets. When it cannot
    be had (a private model's 404, an error), the checks of the model's spec stand alone and the log says
    so. A job that fails with one of the model's ``permanent_failures`` fails the task at once; any other
    failure fails the try, and ``retries`` apply. Invalid arguments fail the task at once, before any
    request.

    :param model_id: the model, e.g. ``model_kling-lip-sync``: its spec (:func:`airflow_kling.models.model_spec`)
        gives the local checks and the permanent failures. Templated.
    :param inputs: the model's inputs by their wire names (a mapping, or a template rendering one with
        ``render_template_as_native_obj``). Templated.
    :param scenario_conn_id: the Airflow connection id; default ``scenario_default``.
    :param wait_for_completion: wait for the job to end (default); ``False`` returns right after
        submission, for a :class:`~airflow_kling.sensors.job.ScenarioJobSensor` downstream.
    :param deferrable: wait in the triggerer; default ``[operators] default_deferrable``.
    :param poll_interval: seconds between status polls; default 10.
    :param timeout: seconds the job may take from submission before it is cancelled and the task
        fails; default 3600.
    :param project_id: the project to run in, overriding the connection's; default none. Templated.
    :param max_creative_units: when set, first ask for a cost estimate and refuse to submit a job that
        would cost more; default ``None`` (no check).
    :param reattach: on a retry, follow the job an earlier try submitted while it is still running or
        succeeded, instead of submitting again; default ``True``.
    :param settle_seconds: after a submission whose answer was lost, how long to keep looking for its job
        before submitting again; default 90.
    :param permanent_failures: regular expressions for job errors that no retry can fix; default the
        model spec's. An earlier try's job that failed with one fails a retry at once too, without a new job.
    :param first_poll_delay: seconds after a deferral before its trigger may fire (the job trigger's
        first poll, the end of a wait for a slot); default :data:`FIRST_POLL_DELAY` (10).

    When the team already runs as many jobs as its plan allows (HTTP 429 on the submission, see
    :class:`~airflow_kling.exceptions.ScenarioTeamLimitError`), the operator waits for a slot and submits
    again: in the triggerer when deferrable, else asleep in the worker; no try is used up, nothing is paid
    for the refusal, and the wait (5 s doubling to 60 s, each cut by up to half at random) is bounded by
    ``timeout``. A deferred wait ends sooner when a job of the same connection ends in the same
    triggerer: its slot goes to the task that has waited longest; while that triggerer follows all the
    team's running jobs, only such a hand-off ends the wait (its timer would only meet the ceiling again).
    """

    template_fields: Sequence[str] = ("model_id", "inputs", "project_id", "max_creative_units")
    template_fields_renderers: ClassVar[dict[str, str]] = {"inputs": "json"}
    operator_extra_links = (ScenarioJobLink(),)
    ui_color = "#f3e8ff"

    def __init__(
        self,
        *,
        model_id: str,
        inputs: Mapping[str, Any] | str | None = None,
        scenario_conn_id: str = DEFAULT_CONN_ID,
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 10,
        timeout: float = 3600,
        project_id: str | None = None,
        max_creative_units: float | str | None = None,
        reattach: bool = True,
        settle_seconds: float = DEFAULT_SETTLE_SECONDS,
        permanent_failures: Sequence[str] | None = None,
        first_poll_delay: float = FIRST_POLL_DELAY,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if settle_seconds < 0:
            raise ScenarioValidationError(f"settle_seconds must be 0 or more seconds, got {settle_seconds}")
        if poll_interval <= 0:
            raise ScenarioValidationError(
                f"poll_interval must be a positive number of seconds, got {poll_interval}"
            )
        if timeout <= 0:
            raise ScenarioValidationError(f"timeout must be a positive number of seconds, got {timeout}")
        self.model_id = model_id
        # a mapping, or a template that renders one (with render_template_as_native_obj)
        self.inputs: Any = dict(inputs) if isinstance(inputs, Mapping) else (inputs or {})
        self.scenario_conn_id = scenario_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.project_id = project_id
        self.max_creative_units = max_creative_units
        self.reattach = reattach
        self.settle_seconds = settle_seconds
        self.permanent_failures = tuple(permanent_failures) if permanent_failures is not None else None
        self.first_poll_delay = float(first_poll_delay)
        self._check_literal_inputs()
        self.job_id: str | None = None
        self._result: JobResult | None = None
        self._failure: str | None = None

    def _spend_limit(self) -> float | None:
        return check_spend_limit(self.max_creative_units)

    @property
    def spec(self) -> ModelSpec:
        """The spec of ``model_id`` (a generic one for a model no spec names)."""
        from airflow_kling.models import model_spec

        return model_spec(str(self.model_id))

    def failure_patterns(self) -> tuple[str, ...]:
        """``permanent_failures`` when given, else the model spec's."""
        return (
            self.permanent_failures if self.permanent_failures is not None else self.spec.permanent_failures
        )

    def build_inputs(self) -> dict[str, Any]:
        """The model's inputs as sent; subclasses validate and map their arguments here."""
        if not isinstance(self.inputs, Mapping):
            raise ScenarioValidationError(
                f"inputs must be a mapping of input names to values, got {self.inputs!r}"
            )
        return dict(self.inputs)

    # -- execution ------------------------------------------------------------------------------------------

    @override
    def execute(self, context: Context) -> JobResult:
        # The "Scenario job" link reads this key when the try ends: without a job it reads no link, rather
        # than logging a missing XCom as an error after a failure that came before any submission.
        context["ti"].xcom_push(key=JOB_URL_XCOM_KEY, value="")
        with invalid_input_fails_task():  # before any request: bad input never costs anything
            inputs = self.build_inputs()
            limit = self._spend_limit()
            self._check_inputs(inputs)
        if limit is not None:
            self._check_estimate(inputs, limit)
        return self._submit_and_wait(context, inputs, waiting_since=None, waits=0)

    def resume_submission(
        self,
        context: Context,
        event: dict[str, Any] | None = None,
        waiting_since: float | None = None,
        waits: int = 0,
    ) -> JobResult:
        """Resume after a wait for a slot of the team's parallel jobs (in the triggerer): submit again."""
        from airflow_kling.triggers.slot import SLOT_FREED

        handed = isinstance(event, dict) and event.get("status") == SLOT_FREED
        if handed:
            self.log.info("A job of the team ended: submitting into its slot")
        with invalid_input_fails_task():
            inputs = self.build_inputs()
        return self._submit_and_wait(context, inputs, waiting_since=waiting_since, waits=waits, handed=handed)

    def _submit_and_wait(
        self,
        context: Context,
        inputs: dict[str, Any],
        *,
        waiting_since: float | None,
        waits: int,
        handed: bool = False,
    ) -> JobResult:
        while True:
            try:
                submission = self._submit(context, inputs)
                break
            except ScenarioTeamLimitError as refusal:
                waiting_since = waiting_since or time.time()
                delay = self._slot_wait(refusal, waiting_since, waits)
                waits += 1
                if self.deferrable:
                    from airflow_kling.triggers.slot import ScenarioSlotTrigger

                    deadline = waiting_since + float(self.timeout)
                    self.defer(
                        trigger=ScenarioSlotTrigger(
                            wake_at=time.time() + delay,
                            scenario_conn_id=self.scenario_conn_id,
                            waiting_since=waiting_since,
                            not_before=time.time() + self.first_poll_delay,
                            limit=refusal.limit,
                            deadline=deadline,
                            handed_back=handed,
                        ),
                        method_name="resume_submission",
                        kwargs={"waiting_since": waiting_since, "waits": waits},
                        timeout=max(0.0, deadline - time.time()) + DEFERRAL_GRACE,
                    )
                time.sleep(delay)
        job, cost = submission.job, submission.cost
        self.job_id = job_id = submission.job_id
        self._publish_job(context, job_id)
        timeout_at = submission.submitted_at + float(self.timeout)
        if not self.wait_for_completion:
            return self._finish(job, cost)
        if is_terminal(job["status"]):  # no deferral, no wait for a job that has already ended
            return self._finish(self._outcome(job), cost)
        if self.deferrable:
            from airflow_kling.triggers.job import ScenarioJobTrigger

            self.defer(
                trigger=ScenarioJobTrigger(
                    job_id=job_id,
                    scenario_conn_id=self.scenario_conn_id,
                    poll_interval=self.poll_interval,
                    timeout_at=timeout_at,
                    project_id=self.project_id,
                    cancel_on_exit=True,  # this task submitted the job and pays for it
                    first_poll_at=time.time() + self.first_poll_delay,
                ),
                method_name="execute_complete",
                kwargs={"cost": cost},
                timeout=max(0.0, timeout_at - time.time()) + DEFERRAL_GRACE,
            )
        return self._finish(self._wait(job_id, timeout_at), cost)

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, cost: float | None = None
    ) -> JobResult:
        """Resume after the trigger: only a well-formed ``success`` event succeeds."""
        self.job_id = str(event.get("job_id")) if isinstance(event, dict) else None
        return self._finish(self._outcome(event), cost)

    def on_kill(self) -> None:
        """Cancel the remote job (best effort: a refusal is logged, not raised)."""
        if self.job_id:
            self._cancel(self.job_id, "the task was killed")

    # -- lineage (Airflow's OpenLineage provider calls these when it is installed) ---------------------------

    def get_openlineage_facets_on_start(self) -> Any:
        """OpenLineage facets when the task starts: the model and its inputs."""
        return self._lineage()

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage facets when the task ends: the job, its cost and outputs."""
        return self._lineage()

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        """OpenLineage facets when the task fails: the job and its error."""
        return self._lineage()

    def _lineage(self) -> Any:
        """Input assets -> output assets, with the job (id, model, voice, cost, error) as run facets.

        The job id is set again by ``execute_complete``: after a deferral this is a new operator instance.
        """
        from airflow_kling.observability.lineage import asset_datasets, job_run_facets, operator_lineage

        try:
            inputs = self.build_inputs()
        except ScenarioValidationError:
            inputs = {}
        config = self.hook.config
        result = self._result
        return operator_lineage(
            inputs=asset_datasets(config, inputs.values()),
            outputs=asset_datasets(config, result["asset_ids"] if result else []),
            run_facets=job_run_facets(
                config,
                self.job_id,
                str(self.model_id),
                inputs,
                status=result["status"] if result else None,
                cost=result["creative_units_cost"] if result else None,
                error=self._failure,
            ),
        )

    # -- steps ----------------------------------------------------------------------------------------------

    def _check_literal_inputs(self) -> None:
        """The inputs the DAG file fixes, against the spec of a model it names.

        A mistake fails the DAG's import, naming the input and its limit (templated ones are checked once
        rendered).
        """
        from airflow_kling.models.schema import check_inputs, descriptor_inputs
        from airflow_kling.operators.base import is_literal

        if type(self).build_inputs is not ScenarioGenerateOperator.build_inputs:
            return  # a subclass builds the inputs from arguments of its own, and checks those
        if (
            not isinstance(self.model_id, str)
            or not is_literal(self.model_id)
            or not isinstance(self.inputs, Mapping)
        ):
            return
        literal = {name: value for name, value in self.inputs.items() if is_literal(value)}
        described = descriptor_inputs(self.spec.descriptor())
        check_inputs(
            described,
            literal,
            source=f"the spec of {self.model_id}",
            complete=len(literal) == len(self.inputs),
        )
        if described and len(literal) == len(self.inputs):
            self.spec.check_inputs(literal)

    def _check_inputs(self, inputs: dict[str, Any]) -> None:
        """Check ``inputs``: the spec's own checks, then the live descriptor's rules.

        The spec's checks make no request (a path given as an asset id is refused there); the assets of file
        inputs are looked up for the descriptor's.
        """
        from airflow_kling.models.schema import check_inputs, descriptor_inputs

        spec, model_id = self.spec, str(self.model_id)
        spec.check_inputs(inputs)
        check_inputs(descriptor_inputs(spec.descriptor()), inputs, source=f"the spec of {model_id}")
        descriptor = self.hook.model_descriptor(model_id)
        if descriptor is None:
            self.log.warning(
                "The live descriptor of model %s could not be had (GET /models/%s): its inputs were checked "
                "against the provider's spec of it only",
                model_id,
                model_id,
            )
            return
        check_inputs(
            descriptor_inputs(descriptor),
            inputs,
            self._asset_lookup(),
            source=f"the live schema of {model_id} (GET /models/{model_id})",
        )

    def _asset_lookup(self) -> Callable[[str], dict[str, Any] | None]:
        """Asset id -> the asset (``None`` for a 404; ``{}``, nothing to check, when it cannot be had)."""
        from airflow_kling.exceptions import ScenarioNotFoundError

        seen: dict[str, dict[str, Any] | None] = {}

        def lookup(asset_id: str) -> dict[str, Any] | None:
            if asset_id not in seen:
                try:
                    asset = self.hook.get_asset(asset_id)
                    seen[asset_id] = {"kind": asset.get("kind"), "properties": asset.get("properties")}
                except ScenarioNotFoundError:
                    seen[asset_id] = None
                except ScenarioError as error:
                    self.log.warning("Asset %s could not be read to check it: %s", asset_id, error)
                    seen[asset_id] = {}
            return seen[asset_id]

        return lookup

    def _check_estimate(self, inputs: dict[str, Any], limit: float) -> None:
        estimate = self.hook.estimate_cost(self.model_id, inputs)
        if estimate is not None and estimate > limit:
            raise AirflowFailException(
                f"Not submitting: the estimate is {estimate:g} creative units, above max_creative_units={limit:g}"
            )
        self.log.info(
            "Cost estimate: %s creative units (limit %g)",
            "unknown" if estimate is None else f"{estimate:g}",
            limit,
        )

    def _submit(self, context: Context, inputs: dict[str, Any]) -> Submission:
        task_state = context.get("task_state_store")
        adopt_since = None
        ti = context["ti"]
        if task_state is None and (ti.try_number > 1 or JOB_ID_XCOM_KEY in xcoms_cleared_at_start(ti)):
            # Without a store that outlives a try, what an earlier try, or an earlier run of this try that
            # published its job, sent is found by its inputs alone.
            adopt_since = _run_start(context)
        try:
            submission = self.hook.submit_once(
                self.model_id,
                inputs,
                store=TaskStateRecords(task_state) if task_state is not None else None,
                settle_seconds=float(self.settle_seconds),
                adopt_since=adopt_since,
                reattach=self.reattach,
                permanent_failures=self.failure_patterns(),
            )
        except ScenarioAPIError as error:
            if error.status not in REFUSED_SUBMIT_STATUSES:
                raise
            raise AirflowFailException(
                f"{error} (the API refused the submission: nothing was created or billed, and the same "
                "request would be refused again, so the task fails without a retry)"
            ) from None
        metrics.job_obtained(submission.how, str(self.model_id))
        if submission.how == "submitted":
            self.log.info(
                "Submitted Scenario job %s (%s); cost: %s creative units",
                submission.job_id,
                self.model_id,
                submission.cost,
            )
        return submission

    def _slot_wait(self, refusal: ScenarioTeamLimitError, since: float, waits: int) -> float:
        """Seconds to wait before submitting again.

        Fails the try once ``timeout`` has passed since the first refusal. A refused submission created
        nothing: waiting costs nothing but time.
        """
        from airflow_kling.jobs.polling import slot_wait_delay

        waited = time.time() - since
        limit = f"its limit of {refusal.limit}" if refusal.limit else "its limit of"
        if waited >= float(self.timeout):
            raise ScenarioError(
                f"No slot of the team's parallel jobs freed within timeout={self.timeout} s: the team stayed at "
                f"{limit} parallel jobs ({refusal.api_message})"
            )
        delay = min(slot_wait_delay(waits), float(self.timeout) - waited)
        metrics.slot_wait(str(self.model_id))
        self.log.info(
            "The team runs %s parallel Scenario jobs: waiting %.1f s for one of its slots (%.0f s waited so "
            "far, at most timeout=%s s); nothing was created or billed by the refused submission",
            limit,
            delay,
            waited,
            self.timeout,
        )
        return delay

    def _publish_job(self, context: Context, job_id: str) -> None:
        ti = context["ti"]
        url = self.hook.config.job_web_url(job_id)
        ti.xcom_push(key=JOB_ID_XCOM_KEY, value=job_id)
        ti.xcom_push(key=JOB_URL_XCOM_KEY, value=url)
        ti.xcom_push(key=CONN_ID_XCOM_KEY, value=self.scenario_conn_id)
        ti.xcom_push(key=MODEL_ID_XCOM_KEY, value=str(self.model_id))
        self.log.info("Scenario job page: %s", url)

    def _wait(self, job_id: str, timeout_at: float) -> dict[str, Any]:
        try:
            job = self.hook.poll_until_ended(
                job_id, deadline=timeout_at, poll_interval=float(self.poll_interval)
            )
        except ScenarioJobError as error:
            if error.status != "timeout":
                raise
            self._cancel(job_id, "its timeout passed")
            raise ScenarioJobError(
                job_id, "timeout", f"Scenario job {job_id} did not finish within {self.timeout} s"
            ) from None
        return self._outcome(job)

    def _cancel(self, job_id: str, why: str) -> None:
        try:
            self.hook.cancel_job(job_id)
        except ScenarioError as error:
            self.log.warning("Could not cancel Scenario job %s (%s): %s", job_id, why, error)
        else:
            self.log.info("Cancelled Scenario job %s: %s", job_id, why)

    def _outcome(self, news: Any) -> dict[str, Any]:
        """The succeeded job; a refusal no retry can change fails the task, any other ending the try."""
        try:
            return successful_job(news, self.log)
        except ScenarioJobError as error:
            self.job_id = self.job_id or error.job_id
            self._failure = str(error)  # for the lineage of the failed run
            metrics.job_ended(error.status, str(self.model_id), error.job, None)
            refused = error.status == JobStatus.FAILURE and error.job is not None
            if refused and is_permanent_failure(error.job or {}, self.failure_patterns()):
                raise AirflowFailException(
                    f"{error} (the model refused the inputs: retrying cannot help)"
                ) from None
            raise

    def _finish(self, job: dict[str, Any], cost: float | None) -> JobResult:
        result = self._result = job_result(job, cost)
        if is_terminal(result["status"]):
            metrics.job_ended(result["status"], str(self.model_id), job, result["creative_units_cost"])
        self.log.info(
            "Scenario job %s: %s, assets %s, %s creative units",
            result["job_id"],
            result["status"],
            result["asset_ids"],
            result["creative_units_cost"],
        )
        return result


def check_spend_limit(value: Any) -> float | None:
    """``max_creative_units`` as a number of creative units (0 or more), or ``None`` when not set.

    :raises ScenarioValidationError: naming ``max_creative_units`` and what it must be.
    """
    if value in (None, "", "None"):
        return None
    return non_negative_number(value, "max_creative_units", "creative units")


def _run_start(context: Context) -> float | None:
    """Epoch seconds when this DAG run started: no try of this task can have submitted before it."""
    started = getattr(context.get("dag_run"), "start_date", None)
    return started.timestamp() if started is not None else None
