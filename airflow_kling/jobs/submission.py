"""Submit a Scenario job once, and find it again when its answer was lost.

The API has no idempotency key: a ``POST /generate/...`` whose answer never came (HTTP 500, 502 or 504, a
dropped connection, a read timeout) may or may not have created a billed job. So before each ``POST`` an
*intent* is recorded (model, a digest of the inputs, the time), and after an ambiguous outcome, or when a
later try finds an intent with no job id (a worker died between the ``POST`` and the write of the id), the
job is looked for: ``GET /jobs?createdAfter=<intent time>`` paged to the end, a job of that model whose
``metadata.input`` holds every input that was sent, with the same values, not already claimed by another
try. Found: it is adopted. Not found: the lookup goes on for a settle window (a request still in flight
creates its job late), then the job is submitted.

The one case this cannot tell apart: two submissions of identical inputs to the same model within the same
window (e.g. two DAG runs of the same clip in the same second): one may adopt the other's job.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from airflow_kling.api.ids import is_id
from airflow_kling.api.retry import REFUSED_SUBMIT_STATUSES
from airflow_kling.exceptions import (
    ScenarioAmbiguousSubmitError,
    ScenarioAPIError,
    ScenarioNotFoundError,
    ScenarioTeamLimitError,
)
from airflow_kling.jobs.status import JobStatus, api_date, checked_job, is_permanent_failure, job_cost
from airflow_kling.models.schema import finite_number

if TYPE_CHECKING:
    from collections.abc import Iterator
    from logging import Logger

DEFAULT_SETTLE_SECONDS = 90.0
"""Seconds to keep looking for the job of a lost answer before submitting again: longer than the API's
read timeout (60 s by default), so that a request still in flight has created its job by then."""
LOOKUP_INTERVAL = 5.0
"""Seconds between two lookups within the settle window."""
CLOCK_SKEW = 5.0
"""Seconds the lookup reaches back before the intent's time, for a server clock behind this machine's."""
MAX_SUBMISSIONS = 3
"""Ambiguous submissions one call makes at most before it gives up (the task's retry looks again)."""
MAX_CLAIMED = 100
"""Jobs of earlier tries a record read back keeps at most (the newest): a task has far fewer tries."""


class JobClient(Protocol):
    """What a submission needs of :class:`~airflow_kling.hooks.scenario.ScenarioHook`.

    Submit, read and list jobs (the hook's one request path, with its retry rules, under each).
    """

    @property
    def log(self) -> Any:
        """The hook's logger."""

    def run_model(self, model_id: str, inputs: Mapping[str, Any], *, dry_run: bool = ...) -> dict[str, Any]:
        """``POST /generate/custom/{model_id}``: the API's answer."""

    def get_job(self, job_id: str) -> dict[str, Any]:
        """The job ``job_id``."""

    def list_jobs(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """The jobs matching ``filters``, newest first."""


def inputs_digest(model_id: str, inputs: Mapping[str, Any]) -> str:
    """A stable digest of a model and its inputs: the same submission has the same digest."""
    canonical = json.dumps({"model_id": model_id, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class SubmitRecord:
    """What a try writes down about its submission, for a later try to read.

    :param inputs_digest: :func:`inputs_digest` of what was (or was about to be) sent.
    :param intent_at: epoch seconds just before the ``POST``.
    :param job_id: the job, once known; ``None`` while the ``POST`` has not answered.
    :param cost: creative units the submission's answer gave.
    :param claimed: jobs of earlier tries that a lookup must not adopt (they failed or were given up).
    :param refused: the last ``POST`` was refused (HTTP 429 at the team's limit, or 400, 401, 403, 404, 422
        for the request itself): it created nothing, so there is no job to look for.
    """

    inputs_digest: str
    intent_at: float
    job_id: str | None = None
    cost: float | None = None
    claimed: tuple[str, ...] = ()
    refused: bool = False

    def to_json(self) -> dict[str, Any]:
        """The record as JSON, for the task's state store."""
        return {**asdict(self), "claimed": list(self.claimed)}

    @classmethod
    def from_json(cls, value: Any) -> SubmitRecord | None:
        """A record read back, or ``None`` for anything that is not one (an older format, a foreign key).

        What is not of its shape is left out: a ``job_id`` that is not a Scenario id (the intent stands, so the
        job is looked for), ``claimed`` entries beyond :data:`MAX_CLAIMED` or not ids.
        """
        if not isinstance(value, Mapping) or not isinstance(value.get("inputs_digest"), str):
            return None
        job_id, claimed = value.get("job_id"), value.get("claimed")
        return cls(
            inputs_digest=value["inputs_digest"],
            intent_at=finite_number(value.get("intent_at")) or 0.0,
            job_id=job_id if is_id(job_id) else None,
            cost=finite_number(value.get("cost")),
            claimed=tuple(
                job for job in (claimed[-MAX_CLAIMED:] if isinstance(claimed, list) else ()) if is_id(job)
            ),
            refused=value.get("refused") is True,
        )


class RecordStore(Protocol):
    """Where a submission's record lives between tries (the task's ``task_state_store``, a dict in tests)."""

    def load(self) -> SubmitRecord | None:
        """The record of an earlier try, if any."""

    def save(self, record: SubmitRecord) -> None:
        """Write ``record`` down for the later tries."""


@dataclass
class MemoryRecordStore:
    """A :class:`RecordStore` in memory: what a plain hook user gets by default (one process, one try)."""

    record: SubmitRecord | None = None

    def load(self) -> SubmitRecord | None:
        """The record in memory, if any."""
        return self.record

    def save(self, record: SubmitRecord) -> None:
        """Keep ``record`` in memory."""
        self.record = record


@dataclass(frozen=True)
class Submission:
    """The job a submission ended with.

    :param job: the job object (as the submission answered, or as last read).
    :param cost: creative units billed, when the API said.
    :param submitted_at: epoch seconds of the intent behind it (a deadline counts from here).
    :param how: ``submitted``, ``adopted`` (found after a lost answer) or ``reattached`` (an earlier
        try's job, still running or done).
    """

    job: dict[str, Any]
    cost: float | None
    submitted_at: float
    how: str = "submitted"

    @property
    def job_id(self) -> str:
        """The job's id."""
        return str(self.job["jobId"])


def holds_inputs(job: Mapping[str, Any], model_id: str, inputs: Mapping[str, Any]) -> bool:
    """Whether a listed job is a submission of ``inputs`` to ``model_id``.

    Every input sent is in its ``metadata.input`` with the same value (the API may add defaults), and its
    model, when the job names one, is the same.
    """
    named_model = job.get("modelId") or (job.get("metadata") or {}).get("modelId")
    if named_model and named_model != model_id:
        return False
    recorded = (job.get("metadata") or {}).get("input")
    if not isinstance(recorded, Mapping):
        return False
    return all(key in recorded and recorded[key] == value for key, value in inputs.items())


def find_submitted_job(
    hook: JobClient,
    model_id: str,
    inputs: Mapping[str, Any],
    *,
    created_after: float,
    exclude: Collection[str] = (),
    skip_ended_unsuccessfully: bool = False,
    keep_refusals: Sequence[str] = (),
) -> dict[str, Any] | None:
    """The oldest job holding these inputs created after ``created_after``; ``None`` if none.

    ``created_after`` is in epoch seconds, less :data:`CLOCK_SKEW`; jobs in ``exclude`` are passed over.

    :param skip_ended_unsuccessfully: pass over jobs that failed or were canceled (used when no record
        says which jobs earlier tries had already given up on), but for a failure that matches one of
        ``keep_refusals`` (a refusal no retry can change: the caller must not pay for it again).
    """
    found: list[dict[str, Any]] = []
    for job in hook.list_jobs(created_after=api_date(created_after - CLOCK_SKEW), page_size=100):
        if str(job.get("jobId")) in exclude or not holds_inputs(job, model_id, inputs):
            continue
        if (
            skip_ended_unsuccessfully
            and job.get("status") in (JobStatus.FAILURE, JobStatus.CANCELED)
            and not (job.get("status") == JobStatus.FAILURE and is_permanent_failure(job, keep_refusals))
        ):
            continue
        found.append(job)
    return min(found, key=lambda job: str(job.get("createdAt") or "")) if found else None


@dataclass
class SubmitOnce:
    """Submit ``inputs`` to ``model_id``, paying for one job at most.

    One call, and the tries after it that share ``store``, pay for one job at most. See the module's
    description for how, and its one limit.

    :param hook: the sync hook (a :class:`JobClient`) that sends the requests.
    :param store: where the record lives between tries; default one in memory (this call only).
    :param settle_seconds: how long to keep looking for the job of a lost answer before submitting again;
        default :data:`DEFAULT_SETTLE_SECONDS`.
    :param adopt_since: with no record from an earlier try (a store that does not outlive a try), adopt a
        matching job created after this time (epoch seconds) that has not failed; default none.
    :param reattach: follow the job an earlier try recorded, while it runs or once it succeeded; default
        ``True``.
    :param permanent_failures: patterns of job errors no retry can change
        (:func:`airflow_kling.jobs.status.is_permanent_failure`): an earlier try's job that failed with one is
        returned as it is (the caller fails with its refusal) instead of being paid for again; default none.
    """

    hook: JobClient
    store: RecordStore = field(default_factory=MemoryRecordStore)
    settle_seconds: float = DEFAULT_SETTLE_SECONDS
    adopt_since: float | None = None
    reattach: bool = True
    permanent_failures: Sequence[str] = ()
    log: Logger | Any = None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if self.log is None:
            self.log = self.hook.log

    def __call__(self, model_id: str, inputs: Mapping[str, Any]) -> Submission:
        """Submit ``inputs`` to ``model_id``, or find the job an earlier try of the same inputs paid for."""
        inputs = dict(inputs)
        digest = inputs_digest(model_id, inputs)
        record = self.store.load()
        if record is not None and record.inputs_digest != digest:
            self.log.info("Inputs changed since an earlier try: its job is not followed")
            record = None
        claimed: tuple[str, ...] = record.claimed if record else ()
        if record is not None and record.refused and not record.job_id:
            # The last POST was refused (the team's limit, or the request itself): nothing to follow or look
            # for, but the jobs earlier tries gave up on stay claimed.
            return self._submit(model_id, inputs, digest, claimed)
        if record is not None and self.reattach:
            if record.job_id:
                followed = self._follow(record)
                if followed is not None:
                    return followed
                claimed = (*claimed, record.job_id)
            else:
                self.log.warning(
                    "An earlier try sent a submission at %s whose answer was never recorded: looking for its job",
                    api_date(record.intent_at),
                )
                job = self._look(model_id, inputs, record.intent_at, claimed, record.intent_at)
                if job is not None:
                    return self._adopt(job, record, claimed)
        elif self.adopt_since is not None:
            self.log.warning(
                "No record of earlier tries is kept here: looking for a job with these inputs created since %s",
                api_date(self.adopt_since),
            )
            job = find_submitted_job(
                self.hook,
                model_id,
                inputs,
                created_after=self.adopt_since,
                skip_ended_unsuccessfully=True,
                keep_refusals=self.permanent_failures,
            )
            if job is not None and job.get("status") == JobStatus.FAILURE:
                self.log.warning(
                    "Job %s of an earlier try with these inputs was refused with a failure no retry can "
                    "change: not paying again",
                    job["jobId"],
                )
                return Submission(job, job_cost(job), self.adopt_since, "reattached")
            if job is not None:
                return self._adopt(job, SubmitRecord(digest, self.adopt_since), claimed)
        return self._submit(model_id, inputs, digest, claimed)

    def _follow(self, record: SubmitRecord) -> Submission | None:
        job_id = str(record.job_id)
        try:
            job = self.hook.get_job(job_id)
        except ScenarioNotFoundError:
            self.log.warning(
                "Job %s of an earlier try is not known to the API (another project, or purged): submitting anew",
                job_id,
            )
            return None
        if job.get("status") == JobStatus.FAILURE and is_permanent_failure(job, self.permanent_failures):
            self.log.warning(
                "Job %s of an earlier try was refused with a failure no retry can change: not paying again",
                job_id,
            )
            return Submission(job, record.cost, record.intent_at, "reattached")
        if job.get("status") in (JobStatus.FAILURE, JobStatus.CANCELED):
            self.log.info("Job %s of an earlier try ended %s: submitting a new job", job_id, job["status"])
            return None
        self.log.info("Reattaching to job %s submitted by an earlier try (status %s)", job_id, job["status"])
        return Submission(job, record.cost, record.intent_at, "reattached")

    def _submit(
        self, model_id: str, inputs: dict[str, Any], digest: str, claimed: tuple[str, ...]
    ) -> Submission:
        for _ in range(MAX_SUBMISSIONS):
            intent = SubmitRecord(digest, self.clock(), claimed=claimed)
            self.store.save(intent)  # before the POST: a try that dies after it knows to look
            try:
                response = self.hook.run_model(model_id, inputs)
            except ScenarioTeamLimitError:
                self.store.save(replace(intent, refused=True))  # created nothing: no job to look for
                raise
            except ScenarioAPIError as error:
                if error.status in REFUSED_SUBMIT_STATUSES:  # created nothing either, and never will
                    self.store.save(replace(intent, refused=True))
                raise
            except ScenarioAmbiguousSubmitError as error:
                self.log.warning("%s Looking for the job for up to %.0f s.", error, self.settle_seconds)
                job = self._look(model_id, inputs, intent.intent_at, claimed, self.clock())
                if job is not None:
                    return self._adopt(job, intent, claimed)
                self.log.warning("No job was created by the lost submission: submitting again")
                continue
            job = checked_job(response.get("job"))
            cost = finite_number(response.get("creativeUnitsCost"))
            submission = Submission(job, cost, intent.intent_at)
            self.store.save(SubmitRecord(digest, intent.intent_at, submission.job_id, cost, claimed))
            return submission
        raise ScenarioAmbiguousSubmitError(
            f"{MAX_SUBMISSIONS} submissions to {model_id} in a row lost their answer and no job was found: "
            "not submitting again in this try (a retry looks for the job first)"
        )

    def _look(
        self,
        model_id: str,
        inputs: Mapping[str, Any],
        since: float,
        claimed: Collection[str],
        settle_from: float,
    ) -> dict[str, Any] | None:
        """Look for the job until one is found or the settle window after ``settle_from`` has passed."""
        settle_until = settle_from + self.settle_seconds
        while True:
            job = find_submitted_job(self.hook, model_id, inputs, created_after=since, exclude=claimed)
            left = settle_until - self.clock()
            if job is not None or left <= 0:
                return job
            self.sleep(min(LOOKUP_INTERVAL, left))

    def _adopt(self, job: dict[str, Any], intent: SubmitRecord, claimed: tuple[str, ...]) -> Submission:
        job_id = str(job["jobId"])
        self.log.warning(
            "Adopting job %s (created %s): it holds these inputs, so it is the job of the submission whose "
            "answer was lost; no second job is submitted",
            job_id,
            job.get("createdAt"),
        )
        cost = job_cost(job)
        self.store.save(SubmitRecord(intent.inputs_digest, intent.intent_at, job_id, cost, claimed))
        return Submission(job, cost, intent.intent_at, "adopted")
