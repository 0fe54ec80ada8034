"""Spend and jobs in Airflow's metrics: a real task run (``airflow dags test``) with Airflow's StatsD
metrics on, read by a UDP listener on loopback; the values are the emulator's (its jobs, its cost)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from airflow_kling.emulator import EmulatorServer
from airflow_kling.hooks.scenario import ScenarioHook
from tests.airflow_runs import dags_test, prepare_airflow_home
from tests.media_samples import sample_audio, sample_video
from tests.statsd_listener import kling_metrics, received, statsd

__all__ = ["statsd"]  # the listener fixture


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_a_lipsync_and_its_archive_report_jobs_spend_duration_and_bytes(
    mode: str, scenario_emulator: EmulatorServer, statsd: socket.socket, tmp_path: Path
) -> None:
    prepare_airflow_home()
    hook = ScenarioHook()
    video, audio = hook.upload_asset(sample_video()), hook.upload_asset(sample_audio())
    run = dags_test(f"kling_{mode}", {"video": video, "audio": audio})
    assert run.states == {"lipsync": "success"}, run.output[-3000:]
    (job,) = scenario_emulator.store.jobs.values()
    metrics = kling_metrics(received(statsd))
    assert metrics["kling.jobs.submitted"] == ["1|c"]
    assert metrics["kling.jobs.succeeded"] == ["1|c"]
    assert metrics["kling.creative_units"] == [f"{job.cost}|c"]  # the emulator's price of the 3 s clip
    assert metrics["kling.creative_units.model_kling-lip-sync"] == [f"{job.cost}|c"]
    (duration,) = metrics["kling.job.duration"]
    milliseconds = float(duration.removesuffix("|ms"))
    assert job.seconds * 1000 * 0.9 <= milliseconds  # created to ended, as the API dates the job
    assert "kling.jobs.failed" not in metrics


@pytest.mark.every_line
def test_a_refused_job_is_counted_and_costs_nothing(
    scenario_emulator: EmulatorServer, statsd: socket.socket
) -> None:
    prepare_airflow_home()
    scenario_emulator.plan_jobs("failure", error="No face detected")
    video = ScenarioHook().upload_asset(sample_video())
    run = dags_test("kling_sync", {"video": video, "text": "hello there"})
    assert run.states == {"lipsync": "failed"}
    metrics = kling_metrics(received(statsd))
    assert metrics["kling.jobs.submitted"] == ["1|c"]
    assert metrics["kling.jobs.failed"] == ["1|c"]
    assert "kling.creative_units" not in metrics  # a failed job is refunded


def test_a_reviews_verdict_is_counted_by_name(statsd: socket.socket, airflow_home: Path) -> None:
    """What KlingReviewOperator and the re-run report, through Airflow's own Stats in a task (a
    human-in-the-loop answer cannot be given to ``airflow dags test``; the real runs are in
    tests/test_real_deployment.py)."""
    run = dags_test("review_metrics", {})
    assert run.states == {"report_verdicts": "success"}, run.output[-3000:]
    metrics = kling_metrics(received(statsd))
    assert metrics["kling.reviews.approved"] == ["1|c"]
    assert metrics["kling.reviews.rejected"] == ["1|c", "1|c"]
    assert metrics["kling.reviews.timed_out"] == ["1|c"]
    assert metrics["kling.reviews.reruns"] == ["1|c"]
