"""DAGs that the operator and sensor tests run with ``airflow dags test`` against the emulator.

Every DAG comes in a synchronous and a deferrable variant; the tests pass asset ids through ``conf``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, task

from airflow_kling.operators.assets import ScenarioArchiveAssetsOperator, ScenarioUploadAssetOperator
from airflow_kling.operators.generate import ScenarioGenerateOperator
from airflow_kling.operators.kling_lipsync import KlingLipsyncOperator
from airflow_kling.operators.rerun import KlingRerunRejectedOperator
from airflow_kling.operators.review import MIN_RESPONSE_TIMEOUT, REVIEW_XCOM_KEY, KlingReviewOperator
from airflow_kling.sensors.job import ScenarioJobSensor

FAST = {
    "poll_interval": 0.2,
    "settle_seconds": 1.0,
    "retries": 1,
    "retry_delay": timedelta(seconds=0),
    "first_poll_delay": 0.0,
}
PARAMS = {"video": "", "audio": "", "text": "", "voice_speed": "", "max_cu": None}

for mode, deferrable in (("sync", False), ("deferrable", True)):
    with DAG(f"kling_{mode}", schedule=None, params=PARAMS, render_template_as_native_obj=True):
        lipsync = KlingLipsyncOperator(
            task_id="lipsync",
            video_asset_id="{{ params.video }}",
            audio_asset_id="{{ params.audio or None }}",
            text="{{ params.text or None }}",
            voice_speed="{{ params.voice_speed or None }}",
            max_creative_units="{{ params.max_cu }}",
            deferrable=deferrable,
            **FAST,
        )

    with DAG(f"submit_then_sense_{mode}", schedule=None, params=PARAMS):
        submit = ScenarioGenerateOperator(
            task_id="submit",
            model_id="model_kling-lip-sync",
            inputs={"videoUrl": "{{ params.video }}", "text": "{{ params.text }}"},
            wait_for_completion=False,
        )
        sense = ScenarioJobSensor(
            task_id="sense",
            job_id="{{ ti.xcom_pull(task_ids='submit')['job_id'] }}",
            poke_interval=0.2,
            timeout=60,
            deferrable=deferrable,
            soft_fail=True,
        )
        submit >> sense

    with DAG(f"sense_briefly_{mode}", schedule=None, params={"job_id": ""}):
        ScenarioJobSensor(
            task_id="sense",
            job_id="{{ params.job_id }}",
            poke_interval=0.2,
            timeout=1.5,
            deferrable=deferrable,
        )

with DAG(
    "generate_sync",
    schedule=None,
    params={"model_id": "", "inputs": {}},
    render_template_as_native_obj=True,
):
    # Any model, any inputs, as the conf gives them: the live schema's checks before anything is paid.
    ScenarioGenerateOperator(
        task_id="generate", model_id="{{ params.model_id }}", inputs="{{ params.inputs }}", **FAST
    )

with DAG(
    "upscale_and_archive",
    schedule=None,
    params={"image": "", "scale": 2, "destination": ""},
    render_template_as_native_obj=True,
):
    # The suite's second model (tests/upscaler_model.py) through the generic operator and the archive.
    upscale = ScenarioGenerateOperator(
        task_id="upscale",
        model_id="model_test-upscaler",
        inputs={"image": "{{ params.image }}", "scale": "{{ params.scale }}"},
        deferrable=True,
        **FAST,
    )
    upscale >> ScenarioArchiveAssetsOperator(
        task_id="archive",
        job_id="{{ ti.xcom_pull(task_ids='upscale')['job_id'] }}",
        destination="{{ params.destination }}",
    )

with DAG("sense_given_job", schedule=None, params={"job_id": ""}):
    ScenarioJobSensor(
        task_id="sense",
        job_id="{{ params.job_id }}",
        poke_interval=0.2,
        timeout=60,
        deferrable=True,
        soft_fail=True,
    )

with DAG("log_credentials", schedule=None, params={"conn_id": "scenario_fallback"}):

    @task
    def log_credentials(params: dict[str, str] | None = None) -> None:
        """Logs what must never show: Airflow's masker has to redact it in the task's log (and the preview
        tests hang hostile XComs on this task instance)."""
        from airflow_kling.hooks.scenario import ScenarioHook

        assert params is not None
        hook = ScenarioHook(params["conn_id"])
        hook.log.info("secret=%s header=%s", hook.config.api_secret, hook.config.authorization)

    log_credentials()


with DAG("chaos_batch", schedule=None, params={"videos": [], "destination": ""}):
    # The batch's shape (upload, lipsync, archive per clip) with the test DAGs' fast polling, for the chaos
    # tests: every call of every clip meets the emulator's random faults.

    @task
    def clips(params: dict[str, Any] | None = None) -> list[str]:
        assert params is not None
        return list(params["videos"])

    uploads = ScenarioUploadAssetOperator.partial(
        task_id="upload", kind="video", retries=1, retry_delay=timedelta(seconds=0)
    ).expand(source=clips())
    lipsyncs = KlingLipsyncOperator.partial(
        task_id="lipsync", text="hello there", deferrable=True, **FAST
    ).expand(video_asset_id=uploads.output)
    ScenarioArchiveAssetsOperator.partial(
        task_id="archive", destination="{{ params.destination }}", retries=1, retry_delay=timedelta(seconds=0)
    ).expand(job_id=lipsyncs.output.map(lambda result: result["job_id"]))


@task
def where(params: dict[str, Any] | None = None) -> str:
    """The run's ``destination``, as an XCom: a review's templates do not render DAG params."""
    assert params is not None
    return str(params["destination"])


with DAG("kling_review_timeout", schedule=None, params={"job_id": "", "destination": ""}):
    # A review nobody answers: after its response_timeout the clip is rejected ("timed_out"), never approved.

    destination = where()
    archived = ScenarioArchiveAssetsOperator(
        task_id="archive", job_id="{{ params.job_id }}", destination="{{ ti.xcom_pull(task_ids='where') }}"
    )
    (
        destination
        >> archived
        >> KlingReviewOperator(
            task_id="review",
            destination="{{ ti.xcom_pull(task_ids='where') }}",
            publish_to="{{ ti.xcom_pull(task_ids='where') }}/published",
            response_timeout=MIN_RESPONSE_TIMEOUT,
        )
    )


with DAG("kling_review_of_a_rewritten_manifest", schedule=None, params={"job_id": "", "destination": ""}):
    # The clip's manifest.json rewritten between the archive and the review, as anyone with write access to
    # the archive can: the review must fail before anyone is asked.

    @task
    def rewrite_manifest(params: dict[str, Any] | None = None) -> None:
        assert params is not None
        for manifest in Path(params["destination"]).rglob("manifest.json"):
            manifest.write_text("[]")

    destination = where()
    (
        destination
        >> ScenarioArchiveAssetsOperator(
            task_id="archive",
            job_id="{{ params.job_id }}",
            destination="{{ ti.xcom_pull(task_ids='where') }}",
        )
        >> rewrite_manifest()
        >> KlingReviewOperator(
            task_id="review",
            destination="{{ ti.xcom_pull(task_ids='where') }}",
            response_timeout=MIN_RESPONSE_TIMEOUT,
        )
    )


with DAG("kling_rerun_verdict", schedule=None, params={"review": None}):
    # A review's verdict as the run's conf gives it (anything a writer of XComs could push), then the re-run.

    @task(task_id="review")
    def verdict(ti: Any = None, params: dict[str, Any] | None = None) -> None:
        assert params is not None
        ti.xcom_push(key=REVIEW_XCOM_KEY, value=params["review"])

    verdict() >> KlingRerunRejectedOperator(task_id="rerun", conf={"text": "again"})


with DAG(
    "confined_locations",
    schedule=None,
    params={"outside_clip": "", "inside_clip": "", "outside_dir": "", "inside_dir": "", "job_id": "job_x"},
    default_args={"retries": 1, "retry_delay": timedelta(seconds=0)},  # a refusal fails at once all the same
):
    # Every location an operator reads or writes, from the run's conf, one out of [kling] input_roots in each
    # task: each is refused before any request, read or write.
    from airflow_kling.operators.media import KlingPrepareMediaOperator

    ScenarioUploadAssetOperator(task_id="upload", source="{{ params.outside_clip }}")
    KlingPrepareMediaOperator(
        task_id="prepare_in", video="{{ params.outside_clip }}", output_dir="{{ params.inside_dir }}"
    )
    KlingPrepareMediaOperator(
        task_id="prepare_out", video="{{ params.inside_clip }}", output_dir="{{ params.outside_dir }}"
    )
    ScenarioArchiveAssetsOperator(
        task_id="archive", job_id="{{ params.job_id }}", destination="{{ params.outside_dir }}"
    )
    KlingReviewOperator(task_id="review", destination="{{ params.outside_dir }}")
    KlingReviewOperator(
        task_id="publish", destination="{{ params.inside_dir }}", publish_to="{{ params.outside_dir }}"
    )


class OverwritingGenerate(ScenarioGenerateOperator):
    """After its job, writes its own job XComs as any writer of XComs in the run could (the run's conf says
    what): the "Scenario job" link must be built from none of it but a job id of Scenario's shape."""

    def execute(self, context: Any) -> Any:
        result = super().execute(context)
        for key in ("scenario_job_url", "scenario_job_id"):
            if context["params"].get(key) is not None:
                context["ti"].xcom_push(key=key, value=context["params"][key])
        return result


with DAG(
    "hostile_job_link",
    schedule=None,
    params={"inputs": {}, "scenario_job_url": None, "scenario_job_id": None},
    render_template_as_native_obj=True,
):
    OverwritingGenerate(
        task_id="generate", model_id="model_kling-lip-sync", inputs="{{ params.inputs }}", **FAST
    )


with DAG("review_metrics", schedule=None):

    @task
    def report_verdicts() -> None:
        """Report what reviews and a re-run report, from a task as KlingReviewOperator and
        KlingRerunRejectedOperator do (a human-in-the-loop answer cannot be given to ``airflow dags test``)."""
        from airflow_kling.observability import metrics

        for decision in ("approved", "rejected", "rejected", "timed_out"):
            metrics.reviewed(decision)
        metrics.rerun()

    report_verdicts()
