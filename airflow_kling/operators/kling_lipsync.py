"""Kling Lipsync's operator: the generic generate operator with the model's arguments by their Python names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Asset
from typing_extensions import override

from airflow_kling.models.kling_lipsync import KLING_LIPSYNC, check_arguments, kling_lipsync_inputs
from airflow_kling.operators.base import is_literal
from airflow_kling.operators.generate import ScenarioGenerateOperator

LIPSYNC_VIDEOS = Asset(name=KLING_LIPSYNC.archive_asset, group="kling")
"""The Airflow asset the example DAGs' archive tasks update: schedule a DAG on it to run on every new
archived lipsync video (each event's ``extra`` lists the archived ``uris`` and ``job_ids``)."""


class KlingLipsyncOperator(ScenarioGenerateOperator):
    """Make the face in a video speak: Kling Lipsync (``model_kling-lip-sync``) on Scenario.

    Give either an audio asset, or a text with a voice. Arguments are checked before any request, and
    every error names the argument and its limit: those the DAG file fixes when it is parsed (a mistake
    fails its import), templated ones as soon as they are rendered. The media themselves (2-10 s, 720-1920 px, < 100 MB
    video, < 5 MB audio) are the job of :mod:`airflow_kling.media` upstream.

    :param video_asset_id: the video asset (``asset_...``), sent as ``videoUrl``. Templated.
    :param audio_asset_id: an audio asset, sent as ``audioFile``. Templated.
    :param text: 1-120 characters to speak, sent as ``text``. Templated.
    :param voice_id: Kling voice for ``text``; default ``en_AOT``. Templated.
    :param voice_speed: speed of that voice, 0.8-2.0 with one decimal; default 1.0. Templated.
    :param kwargs: every argument of :class:`ScenarioGenerateOperator` but ``model_id`` and ``inputs``.
    """

    template_fields: Sequence[str] = (
        "video_asset_id",
        "audio_asset_id",
        "text",
        "voice_id",
        "voice_speed",
        "project_id",
        "max_creative_units",
    )

    def __init__(
        self,
        *,
        video_asset_id: str,
        audio_asset_id: str | None = None,
        text: str | None = None,
        voice_id: str | None = None,
        voice_speed: float | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model_id=KLING_LIPSYNC.model_id, **kwargs)
        self.video_asset_id = video_asset_id
        self.audio_asset_id = audio_asset_id
        self.text = text
        self.voice_id = voice_id
        self.voice_speed = voice_speed
        # What the DAG file fixes is checked now: a mistake fails the DAG's import, naming the argument.
        arguments = {
            "video_asset_id": video_asset_id,
            "audio_asset_id": audio_asset_id,
            "text": text,
            "voice_id": voice_id,
            "voice_speed": voice_speed,
        }
        literal = {name: value for name, value in arguments.items() if is_literal(value)}
        if len(literal) == len(arguments):
            kling_lipsync_inputs(**literal)
        else:
            check_arguments(**literal)

    @override
    def build_inputs(self) -> dict[str, Any]:
        return kling_lipsync_inputs(
            self.video_asset_id,
            audio_asset_id=self.audio_asset_id,
            text=self.text,
            voice_id=self.voice_id,
            voice_speed=self.voice_speed,
        )
