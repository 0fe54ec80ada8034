"""The XCom keys the operators push beside their return values.

Read by the "Scenario job" link, the batch DAG and the UI preview (:mod:`airflow_kling.plugins`), which finds
a task's job and archived videos through them. Values are plain JSON; none holds a secret or a signed URL.
"""

from __future__ import annotations

from typing import Any, TypedDict

from airflow_kling.jobs.status import job_asset_ids, job_cost

JOB_ID_XCOM_KEY = "scenario_job_id"
"""The job a lipsync (or any generate) task submitted or adopted, pushed as soon as it is known."""
JOB_URL_XCOM_KEY = "scenario_job_url"
"""That job's page in Scenario's web app (the extra link)."""
MODEL_ID_XCOM_KEY = "scenario_model_id"
"""The model that job runs: the preview shows its inputs as the model's spec says."""
CONN_ID_XCOM_KEY = "scenario_conn_id"
"""The Airflow connection the job was submitted through: the preview asks the API through it."""
ARCHIVE_XCOM_KEY = "scenario_archive"
"""What an archive task wrote: an :class:`ArchiveRecord`."""
REVIEWING_XCOM_KEY = "kling_reviewing"
"""The job ids a review task asks about, pushed as it pauses (its preview tab shows their clips)."""
RERUN_XCOM_KEY = "kling_rerun"
"""The run a re-run triggered: ``{"dag_id", "run_id"}`` (the "Re-run" link)."""


class ArchivedFileRecord(TypedDict):
    """One archived file, as verified when it was written."""

    asset_id: str
    job_id: str
    uri: str
    size: int
    sha256: str
    mime_type: str
    manifest_uri: str


class ArchiveRecord(TypedDict):
    """Every file an archive task wrote, the Scenario connection it used and its storage connection."""

    conn_id: str
    storage_conn_id: str | None
    files: list[ArchivedFileRecord]


class JobResult(TypedDict):
    """The return value (XCom) of the operators and the sensor for a job.

    Its id, status, output assets and the creative units it cost (``None`` when the API did not say).
    """

    job_id: str
    status: str
    asset_ids: list[str]
    creative_units_cost: float | None


def job_result(job: dict[str, Any], cost: float | None = None) -> JobResult:
    """The return value (XCom) of the operators and the sensor for a job.

    :param cost: creative units from the submission's answer; the job's own ``billing`` wins when present.
    """
    billed = job_cost(job)
    return JobResult(
        job_id=str(job["jobId"]),
        status=str(job["status"]),
        asset_ids=job_asset_ids(job),
        creative_units_cost=billed if billed is not None else cost,
    )
