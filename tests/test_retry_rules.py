"""The retry rules as pure decisions: which outcomes are retried and how long to wait."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from airflow_kling.api.contract import is_job_submission
from airflow_kling.api.retry import (
    MAX_SERVER_DELAY,
    Attempts,
    Step,
    backoff_delay,
    server_delay,
)
from airflow_kling.exceptions import ScenarioAmbiguousSubmitError, ScenarioTransportError


def attempts(*, submits_job: bool = False, max_retries: int = 4) -> Attempts:
    return Attempts("POST", "/generate/custom/m", submits_job, max_retries, jitter=lambda: 0.0)


def outcome(step: Step) -> str:
    if step.error is not None:
        return type(step.error).__name__
    return "final" if step.final else "retry"


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses_for_ordinary_calls(status: int) -> None:
    assert outcome(attempts().answered(status, {})) == "retry"


@pytest.mark.parametrize("status", [200, 269, 400, 401, 403, 404, 422])
def test_final_statuses(status: int) -> None:
    assert outcome(attempts().answered(status, {})) == "final"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (503, "retry"),
        (500, "ScenarioAmbiguousSubmitError"),
        (502, "ScenarioAmbiguousSubmitError"),
        (504, "ScenarioAmbiguousSubmitError"),
        (408, "ScenarioAmbiguousSubmitError"),
        (400, "final"),
        (409, "final"),
    ],
)
def test_job_submissions_are_resent_only_when_refused_before_any_work(status: int, expected: str) -> None:
    assert outcome(attempts(submits_job=True).answered(status, {})) == expected


def test_a_429_on_a_submission_is_retried_at_once_only_when_the_server_names_a_wait() -> None:
    """Without ``Retry-After`` it is the team's parallel-job ceiling: an immediate retry repeats it, so the
    caller waits for a slot instead (:class:`~airflow_kling.exceptions.ScenarioTeamLimitError`)."""
    assert outcome(attempts(submits_job=True).answered(429, {})) == "final"
    assert outcome(attempts(submits_job=True).answered(429, {"retry-after": "2"})) == "retry"
    assert outcome(attempts(submits_job=False).answered(429, {})) == "retry"  # a read: retried as before


def test_x_should_retry_wins_over_the_status() -> None:
    assert outcome(attempts().answered(400, {"x-should-retry": "true"})) == "retry"
    assert outcome(attempts().answered(503, {"x-should-retry": "false"})) == "final"
    assert outcome(attempts(submits_job=True).answered(500, {"x-should-retry": "true"})) == "retry"


def test_transport_errors() -> None:
    assert outcome(attempts(submits_job=True).failed("ConnectError", request_sent=False)) == "retry"
    assert (
        outcome(attempts(submits_job=True).failed("ReadTimeout", request_sent=True))
        == "ScenarioAmbiguousSubmitError"
    )
    assert outcome(attempts().failed("ReadTimeout", request_sent=True)) == "retry"


def test_retries_count_up_to_the_limit_then_stop() -> None:
    state = attempts(max_retries=2)
    delays = [state.answered(502, {}).delay, state.answered(502, {}).delay]
    assert delays == [0.5, 1.0]  # backoff with the injected jitter
    assert state.answered(502, {}).final  # the last answer goes back to the caller
    state = attempts(max_retries=1)
    assert outcome(state.failed("ConnectionError", request_sent=False)) == "retry"
    last = state.failed("ConnectionError", request_sent=False)
    assert isinstance(last.error, ScenarioTransportError)
    assert "after 2 attempts: ConnectionError" in str(last.error)


def test_the_server_delay_wins_over_the_backoff() -> None:
    assert attempts().answered(429, {"retry-after": "3"}).delay == 3.0


def test_an_ambiguous_submission_says_what_may_have_happened() -> None:
    error = attempts(submits_job=True).answered(504, {}).error
    assert isinstance(error, ScenarioAmbiguousSubmitError)
    assert "may have been created and billed" in str(error)


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
    # A cost estimate creates nothing: it is a read for the retry rules.
    assert not is_job_submission("POST", "/generate/custom/model_kling-lip-sync", {"dryRun": "api"})
