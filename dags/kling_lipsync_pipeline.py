"""Kling Lipsync, end to end: prepare the media, upload it, run the lipsync (deferred), archive the result.

Run it with no input at all: it synthesizes a sample clip and voice. Give ``video`` (and ``audio``, or a
``text`` to speak) as local paths or object-storage URIs to run it on your own media.

Files pass from task to task through the ``work`` location, which every worker must see: the default
(``$AIRFLOW_HOME/kling-work``) fits one machine; on Celery or Kubernetes workers give an object-storage URI
(``s3://bucket/kling-work``).

Whoever may trigger this DAG chooses ``video``, ``audio``, ``work`` and ``destination``, which are read and
written with the worker's rights. Set ``[kling] input_roots`` (``AIRFLOW__KLING__INPUT_ROOTS``: local folders
and object-store prefixes, comma-separated) to confine them to those roots; the defaults are always allowed.

    preprocess -> upload_video, upload_audio -> lipsync (deferrable) -> archive

``kling_lipsync_review`` is the same pipeline with a person's review after the archive (Airflow's
human-in-the-loop *Required actions*): **Approve** publishes the clip (to ``publish_to`` when given) and
updates the asset ``kling_lipsync_published``; **Reject**, or no answer within three days, publishes nothing.
The verdict, with the reviewer's comment, is kept in the clip's ``manifest.json``. With ``rerun_on_reject``,
a rejected clip is made again once: a new run of this DAG with the same settings (a new paid job).

    ... -> archive -> review (Approve: published / Reject: nothing published) -> rerun (Reject: a new run)
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_kling.models.kling_lipsync import (
    DEFAULT_VOICE_ID,
    DEFAULT_VOICE_SPEED,
    TEXT_MAX_CHARS,
    VOICE_SPEED_RANGE,
)
from airflow_kling.operators.assets import ScenarioArchiveAssetsOperator, ScenarioUploadAssetOperator
from airflow_kling.operators.kling_lipsync import LIPSYNC_VIDEOS, KlingLipsyncOperator
from airflow_kling.operators.media import KlingPrepareMediaOperator
from airflow_kling.operators.rerun import KlingRerunRejectedOperator
from airflow_kling.operators.review import KlingReviewOperator

REVIEW_PARAMS = {
    "publish_to": Param(
        None,
        type=["null", "string"],
        title="Published location",
        description="Where an approved clip is copied (folder or object-storage URI). Empty: published where "
        "it was archived.",
        section="Review",
    ),
    "rerun_on_reject": Param(
        False,
        type=["boolean", "null"],
        title="Re-run a rejected clip",
        description="When the reviewer rejects the clip, run this DAG again with the same settings (a new "
        "paid job), once.",
        section="Review",
    ),
}

for dag_id, description, with_review, extra_params in (
    ("kling_lipsync_pipeline", "Prepare media, run Kling Lipsync on Scenario, archive the video", False, {}),
    (
        "kling_lipsync_review",
        "The pipeline, then a person approves or rejects the clip before it is published",
        True,
        REVIEW_PARAMS,
    ),
):
    with DAG(
        dag_id=dag_id,
        description=description,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        render_template_as_native_obj=True,
        tags=["kling", "scenario", "example"],
        doc_md=__doc__,
        params={  # in the order a person fills the form: media, text mode, storage and budget, review
            "video": Param(
                None,
                type=["null", "string"],
                title="Video",
                description="The clip: a path or object-storage URI every worker sees. Empty: a generated sample.",
                section="Media",
            ),
            "audio": Param(
                None,
                type=["null", "string"],
                title="Audio",
                description="Audio mode: the voice track (path or URI). Empty, with no Text: a generated voice.",
                section="Media",
            ),
            "text": Param(
                None,
                type=["null", "string"],
                maxLength=TEXT_MAX_CHARS,
                title="Text",
                description=f"Text mode: fill this (1-{TEXT_MAX_CHARS} characters) to have it spoken by the voice below "
                "instead of an audio track.",
                section="Text mode",
            ),
            "voice_id": Param(
                DEFAULT_VOICE_ID,
                type=["string", "null"],
                minLength=1,
                title="Voice",
                description="The Kling voice id that speaks the text (the API publishes no list of voices; "
                f"{DEFAULT_VOICE_ID} is its default).",
                section="Text mode",
            ),
            "voice_speed": Param(
                DEFAULT_VOICE_SPEED,
                type=["number", "null"],
                minimum=VOICE_SPEED_RANGE[0],
                maximum=VOICE_SPEED_RANGE[1],
                title="Voice speed",
                description=f"Speed of that voice, {VOICE_SPEED_RANGE[0]}-{VOICE_SPEED_RANGE[1]} with one decimal.",
                section="Text mode",
            ),
            "start": Param(
                0.0,
                type=["number", "null"],
                minimum=0,
                title="Start (s)",
                description="Seconds into the clip where the 2-10 s window sent to Kling starts.",
                section="Media",
            ),
            "work": Param(
                None,
                type=["null", "string"],
                title="Work location",
                description="Where files pass between tasks: a folder every worker sees, or an object-storage URI "
                "(s3://bucket/kling-work). Empty: $AIRFLOW_HOME/kling-work (one machine).",
                section="Storage and budget",
            ),
            "destination": Param(
                None,
                type=["null", "string"],
                title="Archive location",
                description="Folder or object-storage URI of the archive. Empty: $AIRFLOW_HOME/kling-archive.",
                section="Storage and budget",
            ),
            "max_creative_units": Param(
                500,
                type=["number", "null"],
                title="Budget (creative units)",
                description="Refuse a job estimated above this. Empty: no check.",
                section="Storage and budget",
            ),
            **extra_params,
        },
    ):

        @task(multiple_outputs=True)  # said, not inferred from the return type (ruff's AIR202)
        def resolve_inputs(params: dict[str, Any] | None = None, run_id: str | None = None) -> dict[str, Any]:
            """Where the media are and where results go.

            Synthesizes sample media into the work location when none is given. Both locations are checked
            writable before anything is paid for.
            """
            import tempfile
            from pathlib import Path

            from airflow_kling.files.locations import check_input_location
            from airflow_kling.files.storage import check_writable, plain_uri, publish
            from airflow_kling.media.samples import make_audio, make_video
            from airflow_kling.models.kling_lipsync import check_arguments
            from airflow_kling.operators.failures import invalid_input_fails_task
            from airflow_kling.operators.generate import check_spend_limit

            assert params is not None
            home = Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser()
            with invalid_input_fails_task():  # the whole conf, before any clip is prepared or anything paid
                for name in ("video", "audio"):
                    if params.get(name):
                        check_input_location(params[name], name)
                voice_id = params["voice_id"] or DEFAULT_VOICE_ID  # a field left empty: its default
                voice_speed = DEFAULT_VOICE_SPEED if params["voice_speed"] is None else params["voice_speed"]
                if params["text"]:
                    check_arguments(text=params["text"], voice_speed=voice_speed)
                check_spend_limit(params["max_creative_units"])
                destination = check_writable(
                    params["destination"] or str(home / "kling-archive"), "destination"
                )
                work_root = check_writable(params["work"] or str(home / "kling-work"), "work")
                if params.get("publish_to"):
                    check_writable(params["publish_to"], "publish_to")
            work = work_root / str(run_id).replace(":", "_").replace("+", "_")
            video, audio, text = params["video"], params["audio"], params["text"]
            with tempfile.TemporaryDirectory(prefix="kling-samples-") as scratch:
                if not video:
                    sample = make_video(
                        Path(scratch) / "sample-face.mp4", width=1280, height=720, seconds=4, fps=25
                    )
                    video = publish(Path(sample), work / "sample-face.mp4")
                if not audio and not text:
                    sample = make_audio(Path(scratch) / "sample-voice.wav", seconds=3)
                    audio = publish(Path(sample), work / "sample-voice.wav")
            return {
                "video": video,
                "audio": None if text else audio,
                "text": text or None,
                "voice_id": voice_id if text else None,
                "voice_speed": voice_speed if text else None,
                "work_dir": plain_uri(work / "prepared"),
                "destination": plain_uri(destination),
                "publish_to": params.get("publish_to"),  # only kling_lipsync_review has it
            }

        inputs = resolve_inputs()
        prepare = KlingPrepareMediaOperator(
            task_id="prepare",
            video="{{ ti.xcom_pull(task_ids='resolve_inputs')['video'] }}",
            audio="{{ ti.xcom_pull(task_ids='resolve_inputs')['audio'] }}",
            output_dir="{{ ti.xcom_pull(task_ids='resolve_inputs')['work_dir'] }}",
            start="{{ params.start or 0 }}",
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
            outlets=[LIPSYNC_VIDEOS],
        )
        inputs >> prepare >> [upload_video, upload_audio] >> lipsync >> archive
        if with_review:
            review = KlingReviewOperator(
                task_id="review",
                destination="{{ ti.xcom_pull(task_ids='resolve_inputs')['destination'] }}",
                publish_to="{{ ti.xcom_pull(task_ids='resolve_inputs')['publish_to'] }}",
            )
            # A rejected clip, when the run asks for it: a new run of this DAG with the same conf (once).
            (
                archive
                >> review
                >> KlingRerunRejectedOperator(task_id="rerun", rerun="{{ params.rerun_on_reject }}")
            )
