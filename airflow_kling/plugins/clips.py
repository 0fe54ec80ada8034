"""What a DAG run's Kling tasks made, read back from the XComs they pushed (:mod:`airflow_kling.jobs.xcoms`).

One :class:`Clip` per Scenario job, with the files an archive task wrote of it.

A lipsync task pushes its job id (and connection) as soon as the job exists, so a job that failed, or is
still running, has a clip too. A mapped batch has one clip per map index; an archive task in the same run
is matched to its lipsync by the job id in what it archived.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from airflow_kling.api.ids import is_model_id
from airflow_kling.hooks.connection import DEFAULT_CONN_ID
from airflow_kling.jobs.xcoms import (
    ARCHIVE_XCOM_KEY,
    CONN_ID_XCOM_KEY,
    JOB_ID_XCOM_KEY,
    MODEL_ID_XCOM_KEY,
    REVIEWING_XCOM_KEY,
    ArchivedFileRecord,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

XCOM_KEYS = (JOB_ID_XCOM_KEY, CONN_ID_XCOM_KEY, MODEL_ID_XCOM_KEY, ARCHIVE_XCOM_KEY, REVIEWING_XCOM_KEY)


@dataclass
class Clip:
    """One Scenario job of a DAG run: the task (and map index) that ran it, and what was archived of it.

    :param task_id: the task that submitted the job; ``None`` when only an archive task names it.
    :param archive_task_id: the task that archived its outputs, if one did.
    :param files: the archived files, as verified when written (local or object-storage URIs).
    :param review_task_id: the task that asks a person about it, if one does.
    """

    job_id: str
    conn_id: str
    map_index: int
    task_id: str | None = None
    archive_task_id: str | None = None
    storage_conn_id: str | None = None
    files: list[ArchivedFileRecord] = field(default_factory=list)
    model_id: str | None = None
    """The model the job ran, as its task pushed it (``None`` when only an archive names the job)."""
    review_task_id: str | None = None

    @property
    def owner_task_id(self) -> str:
        """The task whose pages show this clip first: its lipsync, else its archive task."""
        return str(self.task_id or self.archive_task_id)

    def made_by(self, task_id: str, map_index: int) -> bool:
        """Whether the task instance ran this clip's job, archived it or asks a person about it.

        ``map_index`` -1 on a mapped task means any of its instances (the task's overview).
        """
        if task_id not in (self.task_id, self.archive_task_id, self.review_task_id):
            return False
        return map_index in (-1, self.map_index)

    def archived_file(self, asset_id: str) -> ArchivedFileRecord | None:
        """The archive's record of asset ``asset_id``, if archived."""
        return next((item for item in self.files if item["asset_id"] == asset_id), None)


def clips_from_xcoms(rows: Iterable[tuple[str, int, str, Any]]) -> list[Clip]:
    """The clips of a run from its XComs, as ``(task_id, map_index, key, value)`` rows, in map-index order."""
    jobs: dict[tuple[str, int], str] = {}
    conns: dict[tuple[str, int], str] = {}
    models: dict[tuple[str, int], str] = {}
    archives: list[tuple[str, int, dict[str, Any]]] = []
    reviews: list[tuple[str, int, list[Any]]] = []
    for task_id, map_index, key, value in rows:
        if key == JOB_ID_XCOM_KEY and isinstance(value, str) and value:
            jobs[(task_id, map_index)] = value
        elif key == CONN_ID_XCOM_KEY and isinstance(value, str) and value:
            conns[(task_id, map_index)] = value
        elif key == MODEL_ID_XCOM_KEY and is_model_id(value):
            models[(task_id, map_index)] = value
        elif key == ARCHIVE_XCOM_KEY and isinstance(value, dict):
            archives.append((task_id, map_index, value))
        elif key == REVIEWING_XCOM_KEY and isinstance(value, list):
            reviews.append((task_id, map_index, value[:100]))
    clips = {
        job_id: Clip(
            job_id, conns.get(owner, DEFAULT_CONN_ID), owner[1], task_id=owner[0], model_id=models.get(owner)
        )
        for owner, job_id in jobs.items()
    }
    for task_id, map_index, record in archives:
        for item in _file_records(record.get("files")):
            clip = clips.setdefault(
                item["job_id"],
                Clip(item["job_id"], str(record.get("conn_id") or DEFAULT_CONN_ID), map_index),
            )
            clip.archive_task_id = task_id
            clip.storage_conn_id = record.get("storage_conn_id") or None
            if clip.archived_file(item["asset_id"]) is None:
                clip.files.append(item)
    for task_id, map_index, job_ids in reviews:  # a review names clips the run made: it adds none
        for job_id in job_ids:
            reviewed = clips.get(job_id) if isinstance(job_id, str) else None
            if reviewed is not None and reviewed.map_index == map_index:
                reviewed.review_task_id = task_id
    return sorted(clips.values(), key=lambda clip: (clip.map_index, clip.owner_task_id, clip.job_id))


def _file_records(value: Any) -> list[ArchivedFileRecord]:
    keys = ArchivedFileRecord.__annotations__
    if not isinstance(value, list):
        return []
    return [
        cast(ArchivedFileRecord, item)
        for item in value
        if isinstance(item, dict) and all(key in item for key in keys)
    ]


def load_clips(session: Session, dag_id: str, run_id: str) -> list[Clip]:
    """The clips of one DAG run, from the metadata database (the api-server's session)."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    query = select(XComModel.task_id, XComModel.map_index, XComModel.key, XComModel.value).where(
        XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.key.in_(XCOM_KEYS)
    )
    rows = session.execute(query).all()
    return clips_from_xcoms(
        (row.task_id, row.map_index, row.key, XComModel.deserialize_value(row)) for row in rows
    )


def run_exists(session: Session, dag_id: str, run_id: str) -> bool:
    """Whether DAG ``dag_id`` has a run ``run_id``."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    query = select(DagRun.id).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
    return session.execute(query).first() is not None
