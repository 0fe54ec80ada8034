"""The vocabulary of Scenario jobs, defined once for hooks, operators, sensor and trigger."""

from __future__ import annotations

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
