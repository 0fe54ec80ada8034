"""The contract between :class:`~airflow_kling.triggers.job.ScenarioJobTrigger` and the tasks it wakes: the
event it fires (:func:`job_event`), and how the operators and the sensor read their last news of a job,
an event or a job object (:func:`successful_job`, :func:`check_event`)."""

from __future__ import annotations

from typing import Any

from airflow_kling.jobs.status import JobStatus, ending_message

EVENT_STATUSES = frozenset({"success", "failure", "canceled", "timeout", "error"})
"""Every ``status`` a :class:`~airflow_kling.triggers.job.ScenarioJobTrigger` event can carry: the job's
end, or ``timeout`` and ``error`` (the trigger gave up following it)."""


def job_event(status: str, job_id: str, job: dict[str, Any] | None, message: str) -> dict[str, Any]:
    """The payload of a trigger event: ``status`` (one of :data:`EVENT_STATUSES`), ``job_id``, the last
    job object seen (or ``None``) and a message for the task's log."""
    return {"status": status, "job_id": job_id, "job": job, "message": message}


def successful_job(news: Any) -> dict[str, Any]:
    """What every waiter does with its last news of a job (the operators synchronous and deferred, the
    sensor poking and deferred): the job when it succeeded, else :class:`ScenarioJobError`.

    :param news: a job object that has ended (``jobId``, ``status``, ...) or a trigger event
        (``status``, ``job_id``, ``job``, ``message``; a malformed one is an error, never a success).
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
        message = str(event.get("message") or f"Scenario job {job_id} ended with status {status}")
    if status == JobStatus.SUCCESS and job:
        return dict(job)
    raise ScenarioJobError(job_id, status, message, job)


def check_event(event: Any) -> dict[str, Any]:
    """A trigger event as operators and sensors resume with it; anything malformed is an error, never a
    success."""
    from airflow_kling.exceptions import ScenarioJobError

    if not isinstance(event, dict) or event.get("status") not in EVENT_STATUSES or not event.get("job_id"):
        raise ScenarioJobError(
            str(event.get("job_id") if isinstance(event, dict) else None) or "unknown",
            "error",
            f"Resumed with a malformed trigger event, refusing to treat it as success: {event!r}",
        )
    return event
