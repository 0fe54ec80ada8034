"""The contract between :class:`~airflow_kling.triggers.job.ScenarioJobTrigger` and the tasks it wakes.

The event it fires (:func:`job_event`), and how the operators and the sensor read their last news of a job, an
event or a job object (:func:`successful_job`, :func:`check_event`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from airflow_kling.jobs.polling import HISTORY_LIMIT
from airflow_kling.jobs.status import JobStatus, ending_message

EVENT_STATUSES = frozenset({"success", "failure", "canceled", "timeout", "error"})
"""Every ``status`` a :class:`~airflow_kling.triggers.job.ScenarioJobTrigger` event can carry: the job's
end, or ``timeout`` and ``error`` (the trigger gave up following it)."""


EVENT_JOB_FIELDS = ("jobId", "status", "progress", "createdAt", "updatedAt")
"""What an event keeps of the job beside ``metadata``'s ``assetIds``, ``error`` and ``hint`` and ``billing``'s
``cuCost``: what the task it wakes reads (its result, its error, its metrics), not the job's history."""


def job_event(
    status: str, job_id: str, job: dict[str, Any] | None, message: str, *, statuses: Sequence[str] = ()
) -> dict[str, Any]:
    """The payload of a trigger event.

    ``status`` (one of :data:`EVENT_STATUSES`), ``job_id``, what the task needs of the last job object seen
    (:func:`event_job`; ``None`` when none was), a message for its log, and the ``statuses`` the job reached
    that the trigger did not log (``warming-up at 10:31:02``; the woken task logs them). Airflow logs the
    payload on one line: it stays a few hundred characters, whatever the job holds.
    """
    return {
        "status": status,
        "job_id": job_id,
        "job": None if job is None else event_job(job),
        "message": message,
        "statuses": list(statuses[-HISTORY_LIMIT:]),
    }


def event_job(job: dict[str, Any]) -> dict[str, Any]:
    """The fields of a job object that a woken task reads; long texts cut at 500 characters.

    Those are :data:`EVENT_JOB_FIELDS`, ``metadata``'s ``assetIds``, ``error`` and ``hint``, and ``billing``'s
    ``cuCost``.
    """
    # Loops, not comprehensions: a trigger runs this at every poll, and each comprehension is a call on 3.11.
    kept: dict[str, Any] = {}
    for key in EVENT_JOB_FIELDS:
        if key in job:
            kept[key] = job[key]
    metadata = job.get("metadata")
    kept["metadata"] = said = {}
    if isinstance(metadata, dict):
        for key in ("assetIds", "error", "hint"):
            if key in metadata:
                value = metadata[key]
                said[key] = value[:500] if isinstance(value, str) else value
    billing = job.get("billing")
    if isinstance(billing, dict) and "cuCost" in billing:
        kept["billing"] = {"cuCost": billing["cuCost"]}
    return kept


STATUS_STEP = re.compile(r"^[a-z][a-z-]{0,30}( at \d\d:\d\d:\d\d)?$")
"""A status as an event's ``statuses`` says it (``warming-up at 10:31:02``); anything else is not logged."""


def successful_job(news: Any, log: Any = None) -> dict[str, Any]:
    """The job when it succeeded, else :class:`ScenarioJobError`.

    What every waiter does with its last news of a job: the operators, synchronous and deferred, and the
    sensor, poking and deferred.

    :param news: a job object that has ended (``jobId``, ``status``, ...) or a trigger event
        (``status``, ``job_id``, ``job``, ``message``, ``statuses``; a malformed one is an error, never a
        success).
    :param log: where an event's ``statuses`` are said, a line each (at most :data:`HISTORY_LIMIT`, each of
        the shape :data:`STATUS_STEP`); default nowhere.
    :raises ScenarioJobError: the job failed, was canceled, timed out or could not be followed; it carries
        the job's error and hint in its message and the last job object seen as ``job``.
    """
    from airflow_kling.exceptions import ScenarioJobError

    if isinstance(news, dict) and "jobId" in news:
        job: dict[str, Any] | None = news
        job_id, status, message = str(news["jobId"]), str(news.get("status")), ending_message(news)
    else:
        event = check_event(news)
        job, job_id, status = event.get("job"), str(event["job_id"]), str(event["status"])
        steps = event.get("statuses")
        for step in steps[:HISTORY_LIMIT] if isinstance(steps, list) and log is not None else []:
            if isinstance(step, str) and STATUS_STEP.fullmatch(step):
                log.info("Scenario job %s: %s", job_id, step)
        message = str(event.get("message") or f"Scenario job {job_id} ended with status {status}")
    if status == JobStatus.SUCCESS and job:
        return dict(job)
    raise ScenarioJobError(job_id, status, message, job)


def check_event(event: Any) -> dict[str, Any]:
    """A trigger event as operators and sensors resume with it.

    Anything malformed is an error, never a success.
    """
    from airflow_kling.exceptions import ScenarioJobError

    if not isinstance(event, dict) or event.get("status") not in EVENT_STATUSES or not event.get("job_id"):
        raise ScenarioJobError(
            str(event.get("job_id") if isinstance(event, dict) else None) or "unknown",
            "error",
            f"Resumed with a malformed trigger event, refusing to treat it as success: {event!r}",
        )
    return event
