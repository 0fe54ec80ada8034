"""Operators that move files in and out of Scenario: upload media as assets, archive generated assets."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_kling.exceptions import ScenarioValidationError

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_kling.hooks.scenario import ScenarioHook


class ScenarioUploadAssetOperator(BaseOperator):
    """Upload a local or object-storage file as a Scenario asset; returns the asset id.

    Before sending, the file is probed and checked against Kling's limits for its kind (video: ``.mp4`` or
    ``.mov``, under 100 MB, 2-10 s, 720-1920 px; audio: ``.mp3``/``.wav``/``.m4a``/``.aac``, under 5 MB):
    a file that breaks one is refused with every violation listed, unless ``validate=False``.

    :param source: a local path or an object-storage URI. Templated.
    :param kind: ``video``, ``audio``, ``image``, ...; default inferred from the file name. Templated.
    :param validate: check Kling's limits first; default ``True``.
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
        scenario_conn_id: str = "scenario_default",
        storage_conn_id: str | None = None,
        project_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.kind = kind
        self.validate = validate
        self.scenario_conn_id = scenario_conn_id
        self.storage_conn_id = storage_conn_id
        self.project_id = project_id

    @cached_property
    def hook(self) -> ScenarioHook:
        from airflow_kling.hooks.scenario import ScenarioHook

        return ScenarioHook(self.scenario_conn_id, project_id=self.project_id)

    def execute(self, context: Context) -> str:
        from airflow_kling.media.formats import kind_for
        from airflow_kling.storage import local_copy, storage_path

        source = storage_path(self.source, self.storage_conn_id)
        kind = self.kind or kind_for(source.name)
        if not self.validate or kind not in ("video", "audio"):
            asset_id = self.hook.upload_asset(source, kind=kind)
        else:
            with local_copy(source) as local:
                self._check(local, kind)
                asset_id = self.hook.upload_asset(local, kind=kind, file_name=source.name)
        self.log.info("Uploaded %s as %s asset %s", source, kind, asset_id)
        return asset_id

    def _check(self, local: Path, kind: str) -> None:
        from airflow_kling.media.limits import check_audio, check_video
        from airflow_kling.media.probe import probe

        info = probe(local)
        violations = check_video(info) if kind == "video" else check_audio(info)
        if violations:
            listed = "; ".join(str(violation) for violation in violations)
            raise ScenarioValidationError(
                f"{self.source} breaks Kling's {kind} limits: {listed} "
                "(prepare it with KlingPrepareMediaOperator, or pass validate=False)"
            )
