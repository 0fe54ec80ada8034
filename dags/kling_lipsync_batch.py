r"""Kling Lipsync over a folder of clips: one mapped task group per clip, so that a bad clip fails alone.

Each ``<name>.mp4``/``.mov`` in ``source`` (a directory or an object-storage prefix) is paired with the audio
file of the same name (``.mp3``, ``.wav``, ``.m4a``, ``.aac``) or, when there is none, speaks ``text``.

    list_clips -> clip[i]: prepare_and_upload -> lipsync -> archive -> review (when asked) -> report
                                      \-> check_budget -/

- A clip that cannot be used (not media, too short, ...) fails its own group; the other clips go on and are
  archived. ``report`` names each failed clip and why, and fails the run when any clip failed.
- With ``review`` on, a person approves or rejects each archived clip (one Required action per clip, linked to
  its preview) before it is published; see :class:`airflow_kling.operators.review.KlingReviewOperator`.
- Before the first paid job, ``check_budget`` asks for the estimate of every clip (``dryRun``: nothing is
  paid) and refuses the whole batch, with the total, above ``max_total_creative_units``.
- Files pass between tasks only through ``source`` and the ``work`` location, which every worker must see: the
  default (``$AIRFLOW_HOME/kling-work``) fits one machine; on Celery or Kubernetes workers give an object-storage
  URI (``s3://bucket/kling-work``). Local temporary files never leave the task that made them.
- ``source``, ``work`` and ``destination`` are read and written with the worker's rights; set ``[kling]
  input_roots`` (``AIRFLOW__KLING__INPUT_ROOTS``) to confine them to given roots (the defaults always pass).

Lipsync tasks run in the pool ``kling_lipsync``: create it with ``include_deferred`` so that deferred tasks
count against it and the API's parallel-job limit is respected::

    airflow pools set kling_lipsync 4 "Scenario parallel custom jobs" --include-deferred
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any, cast

from airflow.sdk import DAG, Param, task, task_group

from airflow_kling.jobs.xcoms import JOB_ID_XCOM_KEY
from airflow_kling.models.kling_lipsync import AUDIO_LIMITS, TEXT_MAX_CHARS, VIDEO_LIMITS
from airflow_kling.operators.assets import ScenarioArchiveAssetsOperator
from airflow_kling.operators.kling_lipsync import LIPSYNC_VIDEOS, KlingLipsyncOperator
from airflow_kling.operators.review import KlingReviewOperator

POOL = "kling_lipsync"
SAMPLE_CLIPS = 3
MAX_SOURCE_ENTRIES = 10_000
"""Entries of the source folder (or prefix) listed at most; a larger one fails the batch, naming this."""


def _home_location(folder: str) -> str:
    return os.path.join(os.path.expanduser(os.environ.get("AIRFLOW_HOME", "~/airflow")), folder)


def _record_failure(context: Any) -> None:
    """Keep why a clip's task failed (its final try), for the report."""
    error = context.get("exception")
    context["ti"].xcom_push(
        key="error", value=f"{type(error).__name__}: {error}"[:500] if error else "failed"
    )


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
            None,
            type=["null", "string"],
            title="Clips",
            description="Folder or object-storage prefix of clips (.mp4/.mov, each with an optional audio file "
            "of the same name). Empty: 3 generated samples.",
        ),
        "text": Param(
            "Hello from Airflow!",
            type="string",
            minLength=1,
            maxLength=TEXT_MAX_CHARS,
            title="Text",
            description="Spoken by clips that have no audio file of their own.",
        ),
        "work": Param(
            None,
            type=["null", "string"],
            title="Work location",
            description="Where files pass between tasks: a folder every worker sees, or an object-storage URI "
            "(s3://bucket/kling-work). Empty: $AIRFLOW_HOME/kling-work (one machine).",
        ),
        "destination": Param(
            None,
            type=["null", "string"],
            title="Archive location",
            description="Folder or object-storage URI of the archive. Empty: $AIRFLOW_HOME/kling-archive.",
        ),
        "review": Param(
            False,
            type="boolean",
            title="Review each clip",
            description="Ask a person to approve or reject each archived clip (Required actions) before it is "
            "published (the kling_lipsync_published asset).",
        ),
        "max_total_creative_units": Param(
            2000,
            type="number",
            minimum=0,
            title="Budget (creative units)",
            description="Refuse the whole batch, before any paid job, when the clips' estimates add up to more.",
        ),
    },
):

    @task
    def list_clips(params: dict[str, Any] | None = None, ti: Any = None) -> list[dict[str, Any]]:
        """One entry per clip.

        Its name and the URIs of its video and audio (``None``: speak ``text``). Pushes the archive location
        as ``destination``.
        """
        import tempfile
        from itertools import islice
        from pathlib import Path

        from airflow_kling.exceptions import ScenarioValidationError
        from airflow_kling.files.locations import check_input_location
        from airflow_kling.files.storage import check_writable, plain_uri, publish, storage_path
        from airflow_kling.media.samples import make_video
        from airflow_kling.models.kling_lipsync import check_arguments
        from airflow_kling.operators.failures import invalid_input_fails_task
        from airflow_kling.version_compat import conf

        assert params is not None
        with invalid_input_fails_task():  # the whole conf, before any clip is prepared or anything paid
            for name in ("source", "work", "destination"):
                if params[name]:
                    check_input_location(params[name], name)
            check_arguments(text=params["text"])
            destination = check_writable(
                params["destination"] or _home_location("kling-archive"), "destination"
            )
            work = check_writable(params["work"] or _home_location("kling-work"), "work")
        source = params["source"]
        if not source:
            samples = work / "batch-samples"
            with tempfile.TemporaryDirectory(prefix="kling-samples-") as scratch:
                for number in range(SAMPLE_CLIPS):
                    target = samples / f"clip-{number}.mp4"
                    if not target.exists():
                        local = make_video(
                            Path(scratch) / target.name, width=1280, height=720, seconds=3, fps=25
                        )
                        publish(Path(local), target)
            source = plain_uri(samples)
        listed = list(islice(storage_path(source).iterdir(), MAX_SOURCE_ENTRIES + 1))
        with invalid_input_fails_task():
            if len(listed) > MAX_SOURCE_ENTRIES:
                raise ScenarioValidationError(
                    f"source {source} holds more than {MAX_SOURCE_ENTRIES} entries: give the batch a folder of "
                    "fewer files"
                )
        files = {path.name: path for path in listed}
        clips = []
        for name, path in sorted(files.items()):
            stem, suffix = os.path.splitext(name)
            if suffix.lower() not in VIDEO_LIMITS.extensions:
                continue
            audio = next((files[stem + s] for s in AUDIO_LIMITS.extensions if stem + s in files), None)
            clips.append(
                {"name": stem, "video": plain_uri(path), "audio": plain_uri(audio) if audio else None}
            )
        if not clips:
            raise ValueError(f"No {' or '.join(sorted(VIDEO_LIMITS.extensions))} clip in {source}")
        mappable = conf.getint("core", "max_map_length")
        with invalid_input_fails_task():
            if len(clips) > mappable:
                raise ScenarioValidationError(
                    f"source {source} holds {len(clips)} clips, more than the {mappable} one batch maps "
                    "([core] max_map_length): split them into folders, one batch each"
                )
        ti.xcom_push(key="destination", value=plain_uri(destination))
        ti.xcom_push(key="review", value=bool(params["review"]))  # the review task cannot read params
        return clips

    @task(trigger_rule="all_done", on_failure_callback=_record_failure)
    def check_budget(
        clips: list[dict[str, Any]], params: dict[str, Any] | None = None, ti: Any = None
    ) -> float:
        """The estimate of every clip that was prepared, before any of them is paid for.

        The total in creative units. Fails the batch (and so every lipsync) above
        ``max_total_creative_units``. A clip whose inputs the API refuses (HTTP 400/422) is left out of the
        total: its own lipsync fails, as a bad file fails its group; any other error fails the batch (the
        total would be unknown).
        """
        from airflow_kling.exceptions import ScenarioAPIError
        from airflow_kling.hooks.scenario import ScenarioHook
        from airflow_kling.models.kling_lipsync import MODEL_ID as KLING_LIPSYNC_MODEL_ID
        from airflow_kling.models.kling_lipsync import kling_lipsync_inputs
        from airflow_kling.version_compat import AirflowFailException

        assert params is not None
        hook = ScenarioHook()
        prepared = ti.xcom_pull(task_ids="clip.prepare_and_upload", map_indexes=list(range(len(clips))))
        total = 0.0
        for clip, arguments in zip(clips, prepared, strict=True):
            if not arguments:
                continue  # this clip failed on its own; its group says why
            try:
                estimate = hook.estimate_cost(KLING_LIPSYNC_MODEL_ID, kling_lipsync_inputs(**arguments))
            except ScenarioAPIError as error:
                if error.status not in (400, 422):
                    raise
                print(
                    f"{clip['name']}: left out of the total, the API refuses its inputs: {error.api_message}"
                )
                continue
            print(f"{clip['name']}: {estimate} creative units")
            total += estimate or 0.0
        limit = float(params["max_total_creative_units"])
        if total > limit:
            raise AirflowFailException(
                f"Not submitting the batch: its estimate is {total:g} creative units, above "
                f"max_total_creative_units={limit:g}"
            )
        return total

    clips: Any = list_clips()  # an XComArg: a list of clips once it runs
    budget = check_budget(clips)

    @task_group(
        group_id="clip",
        default_args={
            "on_failure_callback": _record_failure,
            # A lost worker (a killed pod, a replaced node) fails its tasks' tries; each step of a clip is
            # safe to run again (a retried lipsync adopts its job; the archive skips what it has).
            "retries": 2,
            "map_index_template": "{{ ti.xcom_pull(task_ids='list_clips')[ti.map_index]['name'] }}",
        },
    )
    def clip_group(clip: dict[str, Any]) -> None:
        """One clip's steps: prepare and upload, lipsync, archive, review when asked."""

        @task(multiple_outputs=True)  # said, not inferred from the return type (ruff's AIR202)
        def prepare_and_upload(clip: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
            """Fit the clip (and its audio) to Kling's limits and upload them, in this task only.

            Returns the lipsync arguments.
            """
            import tempfile
            from pathlib import Path

            from airflow_kling.files.storage import local_copy, storage_path
            from airflow_kling.hooks.scenario import ScenarioHook
            from airflow_kling.media import prepare_audio, prepare_video
            from airflow_kling.operators.failures import invalid_input_fails_task

            assert params is not None
            hook = ScenarioHook()
            arguments: dict[str, Any] = {"audio_asset_id": None, "text": None}
            with tempfile.TemporaryDirectory(prefix="kling-clip-") as scratch, invalid_input_fails_task():
                with local_copy(storage_path(clip["video"])) as video:
                    prepared = prepare_video(video, Path(scratch) / "video.mp4", limits=VIDEO_LIMITS)
                arguments["video_asset_id"] = hook.upload_asset(
                    prepared.output, file_name=f"{clip['name']}.mp4"
                )
                if clip["audio"]:
                    with local_copy(storage_path(clip["audio"])) as audio:
                        voice = prepare_audio(
                            audio,
                            Path(scratch) / "voice.m4a",
                            limits=AUDIO_LIMITS,
                            max_duration=prepared.output_info["duration"],
                        )
                    arguments["audio_asset_id"] = hook.upload_asset(
                        voice.output, file_name=f"{clip['name']}.m4a"
                    )
                else:
                    arguments["text"] = params["text"]
            return arguments

        arguments: Any = prepare_and_upload(clip)  # its keys are separate XComs (a dict return)
        lipsync = KlingLipsyncOperator(
            task_id="lipsync",
            video_asset_id=arguments["video_asset_id"],
            audio_asset_id=arguments["audio_asset_id"],
            text=arguments["text"],
            pool=POOL,
            deferrable=True,
            poll_interval=5,
            max_creative_units=500,
        )
        archive = ScenarioArchiveAssetsOperator(
            task_id="archive",
            job_id=cast(Any, lipsync.output)[JOB_ID_XCOM_KEY],  # pushed as soon as the job is submitted
            destination="{{ ti.xcom_pull(task_ids='list_clips', key='destination') }}",
            outlets=[LIPSYNC_VIDEOS],
        )
        review = KlingReviewOperator(
            task_id="review",
            destination="{{ ti.xcom_pull(task_ids='list_clips', key='destination') }}",
            ask="{{ ti.xcom_pull(task_ids='list_clips', key='review') }}",  # the review param
        )
        arguments >> budget >> lipsync >> archive >> review

    groups = clip_group.expand(clip=clips)

    @task(trigger_rule="all_done", multiple_outputs=True)
    def report(clips: list[dict[str, Any]], ti: Any = None) -> dict[str, str]:
        """What happened to each clip: its archived video, or why there is none. Fails if any clip failed."""
        indexes = list(range(len(clips)))
        jobs = ti.xcom_pull(task_ids="clip.lipsync", map_indexes=indexes)
        archived = ti.xcom_pull(task_ids="clip.archive", map_indexes=indexes)
        steps = ("clip.prepare_and_upload", "clip.lipsync", "clip.archive")
        errors = {step: ti.xcom_pull(task_ids=step, key="error", map_indexes=indexes) for step in steps}
        budget_error = ti.xcom_pull(task_ids="check_budget", key="error")
        outcome = {}
        for index, clip in enumerate(clips):
            if archived[index]:
                outcome[clip["name"]] = f"archived {', '.join(archived[index])} (job {jobs[index]['job_id']})"
                continue
            why = next(
                (f"{step.split('.')[-1]}: {errors[step][index]}" for step in steps if errors[step][index]),
                f"check_budget: {budget_error}" if budget_error else "see this clip's task instances",
            )
            outcome[clip["name"]] = f"failed at {why}"
        for name, result in outcome.items():
            print(f"{name}: {result}")
        failed = [name for name, result in outcome.items() if result.startswith("failed")]
        if failed:
            raise RuntimeError(
                f"{len(failed)} of {len(clips)} clip(s) failed: "
                + "; ".join(f"{name} ({outcome[name]})" for name in failed)
            )
        return outcome

    groups >> report(clips)
