"""Make a user's clip (and voice track) fit a model's media limits before anything is uploaded or paid for."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from typing_extensions import override

from airflow_kling.exceptions import ScenarioValidationError
from airflow_kling.models.kling_lipsync import KLING_LIPSYNC
from airflow_kling.operators.base import is_literal, non_negative_number
from airflow_kling.operators.failures import invalid_input_fails_task

if TYPE_CHECKING:
    from airflow.sdk import Context


class KlingPrepareMediaOperator(BaseOperator):
    """Turn any clip into one that meets Kling's limits, and its voice track into one that fits too.

    The video becomes an H.264/AAC ``.mp4`` of 2-10 s with both sides 720-1920 px (see
    :func:`airflow_kling.media.prepare.prepare_video`); the audio an ``.m4a`` under 5 MB, cut at the
    prepared video's length. A file that already fits is copied (an H.264 clip in another container, or with
    other sound, is remuxed: its picture is never re-encoded). Returns
    ``{"video": uri, "audio": uri | None, "report": {"video": {...}, "audio": {...} | None}}``, where each
    report says what was changed and why.

    :param video: the clip: a local path or an object-storage URI (``s3://...``). Templated.
    :param audio: the voice track (audio, or a video whose sound is used), same forms; ``None`` for
        text-driven lipsync. Templated.
    :param output_dir: where the prepared files go: a local directory or an object-storage URI. Templated.
    :param start: seconds into the clip where the kept window (at most 10 s) starts; default 0. Templated.
    :param pad_short: hold the last frame of a clip shorter than 2 s instead of failing; default ``False``.
    :param model_id: the model whose media limits the files are prepared to (its spec's video and audio
        limits); default Kling Lipsync's.
    :param storage_conn_id: the connection of the object store, when the URIs need one; default none.
    """

    template_fields: Sequence[str] = ("video", "audio", "output_dir", "start")
    ui_color = "#e0f2fe"

    def __init__(
        self,
        *,
        video: str,
        output_dir: str,
        audio: str | None = None,
        start: float | str = 0.0,
        pad_short: bool = False,
        storage_conn_id: str | None = None,
        model_id: str = KLING_LIPSYNC.model_id,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from airflow_kling.models import model_spec

        spec = model_spec(model_id)
        if spec.video_limits is None or spec.audio_limits is None:
            raise ScenarioValidationError(
                f"model_id={model_id!r}: its spec gives no video and audio limits to prepare files to"
            )
        self.model_id = model_id
        self.video_limits, self.audio_limits = spec.video_limits, spec.audio_limits
        self.video = video
        self.audio = audio
        self.output_dir = output_dir
        self.start = start
        if is_literal(start) and start not in (None, ""):
            checked_start(start)  # a literal mistake fails the DAG's import, naming start
        self.pad_short = pad_short
        self.storage_conn_id = storage_conn_id
        self._prepared: dict[str, Any] | None = None

    @override
    def execute(self, context: Context) -> dict[str, Any]:
        with invalid_input_fails_task():  # a file that is not media, or cannot fit, fails on every try
            self._prepared = self._prepare()
            return self._prepared

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The raw files in, the prepared files out (Airflow's OpenLineage provider calls this)."""
        from airflow_kling.observability.lineage import file_dataset, operator_lineage

        prepared = self._prepared or {}
        sources = [self.video, self.audio]
        return operator_lineage(
            inputs=[file_dataset(str(uri)) for uri in sources if uri not in (None, "", "None")],
            outputs=[file_dataset(str(prepared[kind])) for kind in ("video", "audio") if prepared.get(kind)],
        )

    def _prepare(self) -> dict[str, Any]:
        from airflow_kling.files.storage import check_writable, local_copy, publish, readable_path
        from airflow_kling.media.prepare import prepare_audio, prepare_video

        video_source = readable_path(self.video, "video", self.storage_conn_id)
        audio_source = (
            None
            if self.audio in (None, "", "None")
            else readable_path(str(self.audio), "audio", self.storage_conn_id)
        )
        output_dir = check_writable(self.output_dir, "output_dir", self.storage_conn_id)
        start = checked_start(self.start)
        with tempfile.TemporaryDirectory(prefix="kling-prepare-") as work:
            video_name = f"{PurePosixPath(video_source.name).stem}.kling.mp4"
            with local_copy(video_source) as local_video:
                video_report = prepare_video(
                    local_video,
                    Path(work) / video_name,
                    limits=self.video_limits,
                    start=start,
                    pad_short=self.pad_short,
                )
            self._log_report("video", video_report.as_dict())
            result: dict[str, Any] = {
                "video": publish(Path(video_report.output), output_dir / video_name),
                "audio": None,
                "report": {"video": video_report.as_dict(), "audio": None},
            }
            if audio_source is not None:
                audio_name = f"{PurePosixPath(audio_source.name).stem}.kling.m4a"
                with local_copy(audio_source) as local_audio:
                    audio_report = prepare_audio(
                        local_audio,
                        Path(work) / audio_name,
                        limits=self.audio_limits,
                        max_duration=float(video_report.output_info["duration"]),
                    )
                self._log_report("audio", audio_report.as_dict())
                result["audio"] = publish(Path(audio_report.output), output_dir / audio_name)
                result["report"]["audio"] = audio_report.as_dict()
        return result

    def _log_report(self, what: str, report: dict[str, Any]) -> None:
        self.log.info("Prepared %s %s: %s", what, report["source"], "; ".join(report["changes"]))


def checked_start(value: Any) -> float:
    """``start`` as seconds into the clip, 0 or more.

    :raises ScenarioValidationError: naming ``start`` and what it must be.
    """
    return non_negative_number(value, "start", "seconds")
