"""The vocabulary of Scenario jobs, defined once for hooks, operators, sensor and trigger."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from airflow_kling.api.ids import checked_id
from airflow_kling.exceptions import ScenarioResponseError
from airflow_kling.models.schema import finite_number


class JobStatus(StrEnum):
    """Every ``job.status`` the API sends (note the spelling ``canceled``)."""

    PENDING = "pending"
    QUEUED = "queued"
    WARMING_UP = "warming-up"
    IN_PROGRESS = "in-progress"
    FINALIZING = "finalizing"
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        """Whether a job in this status has ended."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.SUCCESS, JobStatus.FAILURE, JobStatus.CANCELED})
NON_TERMINAL_STATUSES = frozenset(JobStatus) - TERMINAL_STATUSES


def api_date(timestamp: float) -> str:
    """Epoch seconds as the API writes dates: ISO-8601 with milliseconds and ``Z``."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_api_date(text: str) -> datetime:
    """A date as the API writes it (ISO-8601, ``Z`` or an offset), timezone-aware.

    :raises ValueError: ``text`` is not such a date.
    """
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


MAX_OUTPUT_ASSETS = 1000
"""Output asset ids of one job read at most (an answer is not ours to trust with its size)."""


def checked_job(value: Any) -> dict[str, Any]:
    """A job object from an API answer with its types checked, read in this one place.

    ``jobId`` of an id's shape, ``status`` a text, ``progress`` a number (clamped to 0-1; 0 when absent),
    ``metadata`` an object (empty when absent) whose ``assetIds`` is a list of ids and whose ``error`` and
    ``hint`` are texts, and ``billing`` an object when present.

    :raises ScenarioResponseError: naming the field of the wrong type, before anything acts on it.
    """
    if not isinstance(value, dict):
        raise ScenarioResponseError(f"The API answered a job that is not an object: {type(value).__name__}")
    job = dict(value)
    job["jobId"] = checked_id(job.get("jobId"), "jobId")
    if not isinstance(job.get("status"), str):
        raise _wrong(job, "status", "a text")
    progress = job.get("progress")
    if progress is None:
        progress = 0.0
    if type(progress) is not float and (isinstance(progress, bool) or not isinstance(progress, (int, float))):
        raise _wrong(job, "progress", "a number from 0 to 1")
    if not 0.0 <= progress <= 1.0:  # out of range, or not a number (NaN)
        if type(progress) is float and not math.isfinite(progress):  # an int of any size is finite
            raise _wrong(job, "progress", "a number from 0 to 1")
        progress = 0.0 if progress < 0.0 else 1.0
    job["progress"] = float(progress)
    metadata = job.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise _wrong(job, "metadata", "an object")
    assets = metadata.get("assetIds")
    if assets is not None:
        if not isinstance(assets, list) or len(assets) > MAX_OUTPUT_ASSETS:
            raise _wrong(job, "metadata.assetIds", f"a list of at most {MAX_OUTPUT_ASSETS} asset ids")
        metadata = {**metadata, "assetIds": [checked_id(item, "metadata.assetIds item") for item in assets]}
    for key in ("error", "hint"):
        if metadata.get(key) is not None and not isinstance(metadata[key], str):
            raise _wrong(job, f"metadata.{key}", "a text")
    job["metadata"] = metadata
    if job.get("billing") is not None and not isinstance(job["billing"], dict):
        raise _wrong(job, "billing", "an object")
    return job


def _wrong(job: dict[str, Any], field: str, what: str) -> ScenarioResponseError:
    value: Any = job
    for part in field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return ScenarioResponseError(
        f"The API answered job {job.get('jobId')} with {field} of another type than {what}: "
        f"{type(value).__name__} {str(value)[:40]!r}"
    )


def is_terminal(status: str) -> bool:
    """Whether a wire status ends the job. Unknown statuses are treated as still running."""
    return status in TERMINAL_STATUSES


def job_error_text(job: dict[str, Any]) -> str:
    """The job's ``metadata.error`` and ``metadata.hint`` as one sentence, or an empty string."""
    metadata = job.get("metadata") or {}
    parts = [str(metadata[key]) for key in ("error", "hint") if metadata.get(key)]
    return " Hint: ".join(parts)


def job_asset_ids(job: dict[str, Any]) -> list[str]:
    """The output asset ids of a job (``metadata.assetIds``), empty while it has none."""
    return list((job.get("metadata") or {}).get("assetIds") or [])


def is_permanent_failure(job: dict[str, Any], patterns: Iterable[str]) -> bool:
    """Whether a failed job's error matches one of ``patterns``.

    The patterns are regular expressions (from the model's spec: failures no retry can change), searched
    case-insensitively in ``metadata.error`` and ``hint``.
    """
    text = job_error_text(job)
    return bool(text) and any(re.search(pattern, text, re.IGNORECASE) for pattern in patterns)


def job_cost(job: dict[str, Any]) -> float | None:
    """Creative units billed for a job (``billing.cuCost``), or ``None`` when the API did not say."""
    billing = job.get("billing")
    return finite_number(billing.get("cuCost")) if isinstance(billing, dict) else None


def ending_message(job: dict[str, Any]) -> str:
    """The text ``Scenario job X ended with status S: <error> Hint: <hint>``, for logs, events and errors."""
    message = f"Scenario job {job.get('jobId')} ended with status {job.get('status')}"
    details = job_error_text(job)
    return f"{message}: {details}" if details else message
