"""Operators that move files in and out of Scenario: upload media as assets, archive generated assets."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseOperator
from typing_extensions import override

from airflow_kling.exceptions import ScenarioValidationError
from airflow_kling.jobs.xcoms import ARCHIVE_XCOM_KEY, ArchiveRecord
from airflow_kling.models.kling_lipsync import KLING_LIPSYNC
from airflow_kling.observability import metrics
from airflow_kling.operators.base import DEFAULT_CONN_ID, ScenarioHookMixin, is_literal
from airflow_kling.operators.failures import invalid_input_fails_task

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_kling.files.archive import ArchivedFile


class ScenarioUploadAssetOperator(ScenarioHookMixin, BaseOperator):
    """Upload a local or object-storage file as a Scenario asset; returns the asset id.

    Before sending, a video or audio file is probed and checked against the media limits of ``model_id``'s
    spec for its kind (Kling Lipsync's by default: video ``.mp4`` or ``.mov``, under 100 MB, 2-10 s,
    720-1920 px; audio ``.mp3``/``.wav``/``.m4a``/``.aac``, under 5 MB): a file that breaks one is refused
    with every violation listed, unless ``validate=False``. A video or
    audio file is always probed first, ``validate=False`` or not: a file FFmpeg reads only through a
    pseudo-demuxer (a text, a picture; see :data:`airflow_kling.media.probing.MEDIA_CONTAINERS`) is refused.

    :param source: a local path or an object-storage URI. Templated. When it renders empty, the task is
        skipped (an optional input, e.g. the audio of a text-driven lipsync).
    :param kind: ``video``, ``audio``, ``image``, ...; default inferred from the file name. Templated.
    :param validate: check the model's limits first; default ``True``.
    :param model_id: the model the file is for (its spec's media limits); default Kling Lipsync's. A model
        whose spec gives no limits for the kind is not checked here (its live schema is, before a job).
    :param scenario_conn_id: the Airflow connection id; default ``scenario_default``.
    :param storage_conn_id: the connection of the object store, when the URI needs one; default none.
    :param project_id: the project that owns the asset, overriding the connection's; default none.
    """

    template_fields: Sequence[str] = ("source", "kind", "project_id")
    ui_color = "#e0f2fe"

    def __init__(
        self,
        *,
        source: str,
        kind: str | None = None,
        validate: bool = True,
        scenario_conn_id: str = DEFAULT_CONN_ID,
        storage_conn_id: str | None = None,
        project_id: str | None = None,
        model_id: str = KLING_LIPSYNC.model_id,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_id = model_id
        self.source = source
        self.kind = kind
        self.validate = validate
        self.scenario_conn_id = scenario_conn_id
        self.storage_conn_id = storage_conn_id
        self.project_id = project_id
        self._asset_id: str | None = None

    @override
    def execute(self, context: Context) -> str:
        from airflow_kling.files.storage import local_copy, readable_path
        from airflow_kling.media.formats import kind_for
        from airflow_kling.version_compat import AirflowSkipException

        if self.source in (None, "", "None"):
            raise AirflowSkipException("No source to upload (an optional input left empty)")
        with invalid_input_fails_task():
            source = readable_path(self.source, "source", self.storage_conn_id)
        kind = self.kind or kind_for(source.name)
        if kind not in ("video", "audio"):
            asset_id = self.hook.upload_asset(source, kind=kind)
        else:
            with local_copy(source) as local:
                with invalid_input_fails_task():
                    self._check(local, kind)
                asset_id = self.hook.upload_asset(local, kind=kind, file_name=source.name)
        self.log.info("Uploaded %s as %s asset %s", source, kind, asset_id)
        self._asset_id = asset_id
        return asset_id

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The file in, the Scenario asset out (Airflow's OpenLineage provider calls this)."""
        from airflow_kling.observability.lineage import asset_datasets, file_dataset, operator_lineage

        return operator_lineage(
            inputs=[file_dataset(str(self.source))],
            outputs=asset_datasets(self.hook.config, [self._asset_id]),
        )

    def _check(self, local: Path, kind: str) -> None:
        from airflow_kling.media.limits import check_audio, check_video
        from airflow_kling.media.probing import probe
        from airflow_kling.models import model_spec

        info = probe(local)
        if not self.validate:
            return
        spec = model_spec(self.model_id)
        video, audio = spec.video_limits, spec.audio_limits
        if kind == "video" and video is not None:
            violations = check_video(info, video)
        elif kind == "audio" and audio is not None:
            violations = check_audio(info, audio)
        else:
            return
        if violations:
            listed = "; ".join(str(violation) for violation in violations)
            raise ScenarioValidationError(
                f"{self.source} breaks {spec.title}'s {kind} limits: {listed} "
                "(prepare it with KlingPrepareMediaOperator, or pass validate=False)"
            )


ARCHIVED_OUTPUTS = Asset(name="scenario_archived_outputs", group="scenario")
"""The Airflow asset that :class:`ScenarioArchiveAssetsOperator` updates by default: schedule a DAG on it to
run on every new archive (each event's ``extra`` lists the archived ``uris`` and ``job_ids``). A model's own
asset (e.g. :data:`airflow_kling.operators.kling_lipsync.LIPSYNC_VIDEOS`) is given as ``outlets``."""


def set_asset_extra(outlets: Sequence[Any], context: Context, extra: dict[str, Any]) -> None:
    """Give every asset among a task's ``outlets`` the ``extra`` of the event it is about to emit."""
    for outlet in outlets:
        if isinstance(outlet, Asset):
            context["outlet_events"][outlet].extra = extra


class ScenarioArchiveAssetsOperator(ScenarioHookMixin, BaseOperator):
    """Copy generated assets into your own storage before their signed URLs expire.

    Each file streams in chunks (memory does not grow with its size) to a temporary name, is checked
    against the asset's size and a SHA-256 computed on the way, and only then moved to its final name.
    An expired URL is re-signed (``POST /assets/{id}/download``), a dropped connection resumed; a file
    already archived with the same size and checksum is skipped; a different file at the target is an
    error unless ``overwrite=True``. A ``manifest.json`` per job beside the files records the job, its
    inputs, sizes, checksums, MIME types, URIs and cost: never a secret or a signed URL.

    Returns the archived URIs, pushes what it wrote (URIs, sizes, checksums, manifests) as the XCom
    ``scenario_archive`` for the UI preview, and updates the ``outlets`` (default :data:`ARCHIVED_OUTPUTS`).

    :param destination: a local directory or an object-storage URI (``s3://bucket/prefix``). Templated.
    :param asset_ids: the assets to archive (a list, or a template that renders to one). Templated.
    :param job_id: instead of ``asset_ids``, a job whose ``metadata.assetIds`` are archived. Templated.
    :param file_name_template: each file's path under ``destination``; default ``{job_id}/{asset_id}.{ext}``.
    :param overwrite: replace a different file already at a target; default ``False``.
    :param storage_conn_id: the connection of the object store; default none.
    :param scenario_conn_id: the Airflow connection id; default ``scenario_default``.
    """

    template_fields: Sequence[str] = ("destination", "asset_ids", "job_id", "file_name_template")
    ui_color = "#e0f2fe"

    def __init__(
        self,
        *,
        destination: str,
        asset_ids: list[str] | str | None = None,
        job_id: str | None = None,
        file_name_template: str | None = None,
        overwrite: bool = False,
        storage_conn_id: str | None = None,
        scenario_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("outlets", [ARCHIVED_OUTPUTS])
        super().__init__(**kwargs)
        if (asset_ids is None) == (job_id is None):
            raise ScenarioValidationError("Give exactly one of asset_ids and job_id")
        if file_name_template is not None and is_literal(file_name_template):
            from airflow_kling.files.locations import check_file_name_template

            check_file_name_template(file_name_template)  # at DAG parse: a run would only fail on it
        self.destination = destination
        self.asset_ids = asset_ids
        self.job_id = job_id
        self.file_name_template = file_name_template
        self.overwrite = overwrite
        self.storage_conn_id = storage_conn_id
        self.scenario_conn_id = scenario_conn_id
        self._archived: list[ArchivedFile] = []

    @override
    def execute(self, context: Context) -> list[str]:
        from airflow_kling.files.archive import DEFAULT_FILE_NAME_TEMPLATE, archive_assets
        from airflow_kling.files.storage import check_writable
        from airflow_kling.jobs.status import job_asset_ids

        with invalid_input_fails_task():
            destination = check_writable(self.destination, "destination", self.storage_conn_id)
            asset_ids = (
                self._asset_ids()
                if self.job_id in (None, "")
                else job_asset_ids(self.hook.get_job(str(self.job_id)))
            )
            if not asset_ids:
                raise ScenarioValidationError(
                    f"Nothing to archive: no asset ids (asset_ids={self.asset_ids!r}, job_id={self.job_id!r})"
                )
        with invalid_input_fails_task():  # an answer of the wrong shape, a template that leaves destination
            archived = archive_assets(
                self.hook,
                asset_ids,
                destination,
                file_name_template=self.file_name_template or DEFAULT_FILE_NAME_TEMPLATE,
                overwrite=self.overwrite,
            )
        self._archived = archived
        written = [item for item in archived if not item.skipped]
        metrics.archived(len(written), sum(item.record["size"] for item in written))
        uris = [item.record["uri"] for item in archived]
        context["ti"].xcom_push(key=ARCHIVE_XCOM_KEY, value=self._archive_record(archived))
        extra: dict[str, Any] = {
            "uris": uris,
            "job_ids": sorted({item.record["job_id"] for item in archived}),
        }
        set_asset_extra(self.outlets, context, extra)
        return uris

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The Scenario assets in, the archived files out, each versioned by its SHA-256 and sized.

        Airflow's OpenLineage provider calls this.
        """
        from airflow_kling.observability.lineage import (
            archived_file_dataset,
            asset_datasets,
            operator_lineage,
        )

        return operator_lineage(
            inputs=asset_datasets(self.hook.config, [item.record["asset_id"] for item in self._archived]),
            outputs=[
                archived_file_dataset(item.record["uri"], item.record["sha256"], item.record["size"])
                for item in self._archived
            ],
        )

    def _archive_record(self, archived: list[ArchivedFile]) -> ArchiveRecord:
        return ArchiveRecord(
            conn_id=self.scenario_conn_id,
            storage_conn_id=self.storage_conn_id,
            files=[item.record for item in archived],
        )

    def _asset_ids(self) -> list[str]:
        value = self.asset_ids
        if isinstance(value, str):
            value = json.loads(value) if value.strip().startswith("[") else [value]
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) and item for item in value):
            raise ScenarioValidationError(f"asset_ids must be a list of asset ids, got {self.asset_ids!r}")
        return list(value)
