"""Kling Lipsync, end to end: prepare the media, upload it, run the lipsync (deferred), archive the result.

Run it with no input at all: it synthesizes a sample clip and voice. Give ``video`` (and ``audio``, or a
``text`` to speak) as local paths or object-storage URIs to run it on your own media.

    preprocess -> upload_video, upload_audio -> lipsync (deferrable) -> archive
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_kling.operators.assets import ScenarioArchiveAssetsOperator, ScenarioUploadAssetOperator
from airflow_kling.operators.generate import KlingLipsyncOperator
from airflow_kling.operators.media import KlingPrepareMediaOperator

with DAG(
    dag_id="kling_lipsync_pipeline",
    description="Prepare media, run Kling Lipsync on Scenario, archive the video",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    render_template_as_native_obj=True,
    tags=["kling", "scenario", "example"],
    doc_md=__doc__,
    params={
        "video": Param("", type="string", description="Clip (path or URI). Empty: a generated sample."),
        "audio": Param("", type="string", description="Voice track (path or URI). Empty: text, or a sample."),
        "text": Param(
            "", type="string", maxLength=120, description="Text to speak instead of an audio track."
        ),
        "voice_id": Param("en_AOT", type="string", description="Kling voice for the text."),
        "voice_speed": Param(
            1.0, type="number", minimum=0.8, maximum=2.0, description="Speed of that voice."
        ),
        "start": Param(0.0, type="number", minimum=0, description="Seconds into the clip where it starts."),
        "destination": Param(
            "", type="string", description="Archive root. Empty: $AIRFLOW_HOME/kling-archive."
        ),
        "max_creative_units": Param(
            500, type=["number", "null"], description="Refuse jobs estimated above this."
        ),
    },
) as dag:

    @task
    def resolve_inputs(params: dict[str, Any] | None = None, run_id: str | None = None) -> dict[str, Any]:
        """Where the media are and where results go; synthesizes sample media when none is given."""
        from pathlib import Path

        from airflow_kling.media.samples import make_audio, make_video
        from airflow_kling.operators.errors import invalid_input_fails_task
        from airflow_kling.storage import check_writable

        assert params is not None
        home = Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser()
        destination = params["destination"] or str(home / "kling-archive")
        with invalid_input_fails_task():  # where the video will go is checked before anything is paid for
            check_writable(destination, "destination")
        work = home / "kling-work" / str(run_id).replace(":", "_").replace("+", "_")
        video, audio, text = params["video"], params["audio"], params["text"]
        if not video:
            video = make_video(work / "sample-face.mp4", width=1280, height=720, seconds=4, fps=25)
        if not audio and not text:
            audio = make_audio(work / "sample-voice.wav", seconds=3)
        return {
            "video": video,
            "audio": None if text else audio,
            "text": text or None,
            "voice_id": params["voice_id"] if text else None,
            "voice_speed": params["voice_speed"] if text else None,
            "work_dir": str(work / "prepared"),
            "destination": destination,
        }

    inputs = resolve_inputs()
    prepare = KlingPrepareMediaOperator(
        task_id="prepare",
        video="{{ ti.xcom_pull(task_ids='resolve_inputs')['video'] }}",
        audio="{{ ti.xcom_pull(task_ids='resolve_inputs')['audio'] }}",
        output_dir="{{ ti.xcom_pull(task_ids='resolve_inputs')['work_dir'] }}",
        start="{{ params.start }}",
    )
    upload_video = ScenarioUploadAssetOperator(
        task_id="upload_video", source="{{ ti.xcom_pull(task_ids='prepare')['video'] }}"
    )
    upload_audio = ScenarioUploadAssetOperator(
        task_id="upload_audio", source="{{ ti.xcom_pull(task_ids='prepare')['audio'] }}"
    )
    lipsync = KlingLipsyncOperator(
        task_id="lipsync",
        video_asset_id="{{ ti.xcom_pull(task_ids='upload_video') }}",
        audio_asset_id="{{ ti.xcom_pull(task_ids='upload_audio') }}",
        text="{{ ti.xcom_pull(task_ids='resolve_inputs')['text'] }}",
        voice_id="{{ ti.xcom_pull(task_ids='resolve_inputs')['voice_id'] }}",
        voice_speed="{{ ti.xcom_pull(task_ids='resolve_inputs')['voice_speed'] }}",
        max_creative_units="{{ params.max_creative_units }}",
        deferrable=True,
        poll_interval=2,
        timeout=1800,
        retries=2,
        trigger_rule="none_failed",  # upload_audio is skipped for a text-driven lipsync
    )
    archive = ScenarioArchiveAssetsOperator(
        task_id="archive",
        job_id="{{ ti.xcom_pull(task_ids='lipsync')['job_id'] }}",
        destination="{{ ti.xcom_pull(task_ids='resolve_inputs')['destination'] }}",
    )
    inputs >> prepare >> [upload_video, upload_audio] >> lipsync >> archive
