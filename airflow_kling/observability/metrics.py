"""What the provider reports to Airflow's metrics.

Through Airflow's own ``Stats``, so StatsD and OpenTelemetry both work, with Airflow's prefix (``[metrics]
statsd_prefix``, default ``airflow``), its allow and block lists, and tags where the backend takes them
(``model_id``).

| Name | Kind | Unit | When |
|---|---|---|---|
| ``kling.jobs.submitted`` / ``.adopted`` / ``.reattached`` | counter | jobs | a task obtained its job: paid for now, found after a lost answer, or followed from an earlier try |
| ``kling.jobs.succeeded`` / ``.failed`` / ``.canceled`` / ``.timeout`` / ``.error`` | counter | jobs | a task saw its job end (or gave up on it) |
| ``kling.creative_units`` and ``kling.creative_units.<model_id>`` | counter | creative units (rounded) | a job succeeded, with its cost |
| ``kling.job.duration`` | timer | milliseconds | a job succeeded: from its creation to its last update, as the API dates them |
| ``kling.slot_waits`` | counter | waits | a submission was refused at the team's parallel-job limit and waits for a slot |
| ``kling.reviews.approved``, ``.rejected``, ``.timed_out`` | counter | clips | a review ended |
| ``kling.reviews.reruns`` | counter | runs | a rejected clip was sent to a new run (a new paid job, on purpose) |
| ``kling.archive.files`` / ``kling.archive.bytes`` | counter | files / bytes | an archive task wrote files (skipped ones do not count) |

A metric never fails a task: an error while sending one is logged and dropped.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)


def job_obtained(how: str, model_id: str) -> None:
    """``how``: ``submitted``, ``adopted`` or ``reattached`` (:class:`~airflow_kling.jobs.submission.Submission`)."""
    _incr(f"kling.jobs.{how}", model_id=model_id)


def job_ended(status: str, model_id: str, job: dict[str, Any] | None, cost: float | None) -> None:
    """A job seen to its end by a task: its status; for a success, its cost and how long it took."""
    name = {"success": "succeeded", "failure": "failed"}.get(status, status)
    _incr(f"kling.jobs.{name}", model_id=model_id)
    if status != "success":
        return
    if cost:
        _incr("kling.creative_units", round(cost), model_id=model_id)
        _incr(f"kling.creative_units.{model_id}", round(cost), model_id=model_id)
    took = _duration(job or {})
    if took is not None:
        _send("timing", "kling.job.duration", took, model_id=model_id)


def slot_wait(model_id: str) -> None:
    """A submission waited for a slot under the team's limit."""
    _incr("kling.slot_waits", model_id=model_id)


def reviewed(decision: str) -> None:
    """A person (or the review's timeout) decided on a clip: ``approved``, ``rejected`` or ``timed_out``."""
    _incr(f"kling.reviews.{decision}")


def rerun() -> None:
    """A rejected clip is run again (:class:`~airflow_kling.operators.rerun.KlingRerunRejectedOperator`)."""
    _incr("kling.reviews.reruns")


def archived(files: int, size: int) -> None:
    """``files`` files of ``size`` bytes in all were archived."""
    if files:
        _incr("kling.archive.files", files)
        _incr("kling.archive.bytes", size)


def _duration(job: dict[str, Any]) -> timedelta | None:
    try:
        created = datetime.fromisoformat(str(job["createdAt"]))
        updated = datetime.fromisoformat(str(job["updatedAt"]))
    except (KeyError, ValueError):
        return None
    return updated - created if updated >= created else None


def _incr(name: str, count: int = 1, **tags: str) -> None:
    _send("incr", name, count, **tags)


def _send(kind: str, name: str, value: Any, **tags: str) -> None:
    try:
        from airflow_kling.version_compat import Stats

        getattr(Stats, kind)(name, value, tags=tags or None)
    except Exception:  # a metric must never fail the task that reports it
        log.debug("Metric %s not sent", name, exc_info=True)
