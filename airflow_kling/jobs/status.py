"""The vocabulary of Scenario jobs, defined once for hooks, operators, sensor and trigger."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


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
    """Whether a failed job's error matches one of ``patterns`` (regular expressions searched
    case-insensitively in ``metadata.error`` and ``hint``: failures no retry can change, from the model's
    spec)."""
    text = job_error_text(job)
    return bool(text) and any(re.search(pattern, text, re.IGNORECASE) for pattern in patterns)


def job_cost(job: dict[str, Any]) -> float | None:
    """Creative units billed for a job (``billing.cuCost``), or ``None`` when the API did not say."""
    cost = (job.get("billing") or {}).get("cuCost")
    return float(cost) if isinstance(cost, int | float) else None


def ending_message(job: dict[str, Any]) -> str:
    """ "Scenario job X ended with status S: <error> Hint: <hint>", for logs, events and exceptions."""
    message = f"Scenario job {job.get('jobId')} ended with status {job.get('status')}"
    details = job_error_text(job)
    return f"{message}: {details}" if details else message
