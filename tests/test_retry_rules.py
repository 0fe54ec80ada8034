"""The retry rules as pure decisions: which outcomes are retried and how long to wait."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from airflow_kling.hooks.retry import (
    MAX_SERVER_DELAY,
    Verdict,
    backoff_delay,
    is_job_submission,
    server_delay,
    verdict_for_status,
    verdict_for_transport_error,
)


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses_for_ordinary_calls(status: int) -> None:
    assert verdict_for_status(status, {}, submits_job=False) is Verdict.RETRY


@pytest.mark.parametrize("status", [200, 269, 400, 401, 403, 404, 422])
def test_final_statuses(status: int) -> None:
    assert verdict_for_status(status, {}, submits_job=False) is Verdict.DONE


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (429, Verdict.RETRY),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
        (504, Verdict.RETRY),
        (500, Verdict.AMBIGUOUS),
        (408, Verdict.AMBIGUOUS),
        (400, Verdict.DONE),
        (409, Verdict.DONE),
    ],
)
def test_job_submissions_are_retried_only_when_nothing_can_have_been_created(
    status: int, verdict: Verdict
) -> None:
    assert verdict_for_status(status, {}, submits_job=True) is verdict


def test_x_should_retry_wins_over_the_status() -> None:
    assert verdict_for_status(400, {"x-should-retry": "true"}, submits_job=False) is Verdict.RETRY
    assert verdict_for_status(503, {"x-should-retry": "false"}, submits_job=False) is Verdict.DONE
    assert verdict_for_status(500, {"x-should-retry": "true"}, submits_job=True) is Verdict.RETRY


def test_transport_errors() -> None:
    assert verdict_for_transport_error(request_sent=False, submits_job=True) is Verdict.RETRY
    assert verdict_for_transport_error(request_sent=True, submits_job=True) is Verdict.AMBIGUOUS
    assert verdict_for_transport_error(request_sent=True, submits_job=False) is Verdict.RETRY


def test_server_delay_headers() -> None:
    assert server_delay({"retry-after-ms": "250"}) == pytest.approx(0.25)
    assert server_delay({"retry-after-ms": "250", "retry-after": "9"}) == pytest.approx(0.25)
    assert server_delay({"retry-after": "2.5"}) == 2.5
    assert server_delay({"retry-after": "120"}) == MAX_SERVER_DELAY
    assert server_delay({"retry-after": "0"}) is None
    assert server_delay({"retry-after": "soon"}) is None
    assert server_delay({}) is None
    date = format_datetime(datetime.fromtimestamp(1_000_030, UTC), usegmt=True)
    assert server_delay({"retry-after": date}, now=lambda: 1_000_000.0) == pytest.approx(30)


def test_backoff_is_exponential_capped_and_jitter_only_shortens() -> None:
    assert [backoff_delay(n, jitter=lambda: 0.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert backoff_delay(0, jitter=lambda: 0.999) == pytest.approx(0.375, abs=1e-3)


def test_only_generate_posts_are_job_submissions() -> None:
    assert is_job_submission("POST", "/generate/custom/model_kling-lip-sync")
    assert not is_job_submission("GET", "/generate/custom/x")
    assert not is_job_submission("POST", "/jobs/job_1/action")
