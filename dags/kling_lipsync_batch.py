"""Kling Lipsync over a folder of clips: one mapped task instance per clip, bounded by a pool.

Each ``<name>.mp4``/``.mov`` in ``source`` (a directory or an object-storage prefix) is paired with the audio
file of the same name (``.mp3``, ``.wav``, ``.m4a``, ``.aac``) or, when there is none, speaks ``text``.
Lipsync tasks run in the pool ``kling_lipsync``: create it with ``include_deferred`` so that deferred tasks
count against it and the API's parallel-job limit is respected::

    airflow pools set kling_lipsync 4 "Scenario parallel custom jobs" --include-deferred

A failed clip does not stop the others; ``report`` lists what happened to each.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_kling.media.limits import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS
from airflow_kling.operators.assets import ScenarioArchiveAssetsOperator
from airflow_kling.operators.generate import KlingLipsyncOperator

POOL = "kling_lipsync"

with DAG(
    dag_id="kling_lipsync_batch",
    description="Kling Lipsync over every clip of a folder, with per-clip results",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["kling", "scenario", "example"],
    doc_md=__doc__,
    params={
        "source": Param(
            "", type="string", description="Folder or prefix of clips. Empty: 3 generated samples."
        ),
        "text": Param(
            "Hello from Airflow!", type="string", maxLength=120, description="Spoken without audio."
        ),
        "destination": Param(
            "", type="string", description="Archive root. Empty: $AIRFLOW_HOME/kling-archive."
        ),
    },
):

    @task
    def list_clips(params: dict[str, Any] | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
        """One entry per clip: its prepared video and audio, uploaded, ready for the lipsync."""
        from pathlib import Path

        from airflow_kling.media.samples import make_video
        from airflow_kling.storage import storage_path

        assert params is not None
        source = params["source"]
        if not source:
            samples = Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "kling-work" / "batch"
            for number in range(3):
                make_video(samples / f"clip-{number}.mp4", width=1280, height=720, seconds=3, fps=25)
            source = str(samples)
        folder = storage_path(source)
        files = {path.name: path for path in folder.iterdir()}
        clips = []
        for name, path in sorted(files.items()):
            stem, suffix = os.path.splitext(name)
            if suffix.lower() not in VIDEO_EXTENSIONS:
                continue
            audio = next((files[stem + s] for s in AUDIO_EXTENSIONS if stem + s in files), None)
            clips.append({"name": stem, "video": str(path), "audio": str(audio) if audio else None})
        if not clips:
            raise ValueError(f"No .mp4 or .mov clip in {source}")
        return clips

    @task(map_index_template="{{ clip['name'] }}")
    def prepare_and_upload(clip: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Fit the clip (and its audio) to Kling's limits and upload them; returns the lipsync arguments."""
        import tempfile
        from pathlib import Path

        from airflow_kling.hooks.scenario import ScenarioHook
        from airflow_kling.media.prepare import prepare_audio, prepare_video
        from airflow_kling.storage import local_copy, storage_path

        assert params is not None
        hook = ScenarioHook()
        with tempfile.TemporaryDirectory() as work:
            with local_copy(storage_path(clip["video"])) as video:
                prepared = prepare_video(video, Path(work) / "video.mp4")
            arguments: dict[str, Any] = {
                "video_asset_id": hook.upload_asset(prepared.output, file_name=f"{clip['name']}.mp4")
            }
            if clip["audio"]:
                with local_copy(storage_path(clip["audio"])) as audio:
                    voice = prepare_audio(
                        audio, Path(work) / "voice.m4a", max_duration=prepared.output_info["duration"]
                    )
                arguments["audio_asset_id"] = hook.upload_asset(voice.output, file_name=f"{clip['name']}.m4a")
            else:
                arguments["text"] = params["text"]
        return arguments

    clips = list_clips()
    lipsync = KlingLipsyncOperator.partial(
        task_id="lipsync", pool=POOL, deferrable=True, poll_interval=5, retries=2, max_creative_units=500
    ).expand_kwargs(prepare_and_upload.expand(clip=clips))

    @task
    def archive_root(params: dict[str, Any] | None = None) -> str:
        assert params is not None
        home = os.path.expanduser(os.environ.get("AIRFLOW_HOME", "~/airflow"))
        return str(params["destination"] or os.path.join(home, "kling-archive"))

    archive = ScenarioArchiveAssetsOperator.partial(
        task_id="archive", destination="{{ ti.xcom_pull(task_ids='archive_root') }}"
    ).expand(job_id=lipsync.output.map(lambda result: result["job_id"]))
    archive_root() >> archive

    @task(trigger_rule="all_done")
    def report(clips: Any, ti: Any = None) -> dict[str, str]:
        """What happened to each clip: its archived video, or why there is none. Fails if any clip failed."""
        indexes = list(range(len(clips)))
        jobs = ti.xcom_pull(task_ids="lipsync", map_indexes=indexes)
        archived = ti.xcom_pull(task_ids="archive", map_indexes=indexes)
        outcome = {}
        for index, clip in enumerate(clips):
            job = jobs[index] if isinstance(jobs, list) and index < len(jobs) else None
            uris = archived[index] if isinstance(archived, list) and index < len(archived) else None
            if uris:
                outcome[clip["name"]] = f"archived {', '.join(uris)} (job {job['job_id'] if job else '?'})"
            else:
                outcome[clip["name"]] = "failed: see the lipsync and archive task instances of this clip"
        for name, result in outcome.items():
            print(f"{name}: {result}")
        failed = [name for name, result in outcome.items() if result.startswith("failed")]
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(clips)} clip(s) failed: {', '.join(failed)}")
        return outcome

    report(clips) << archive
