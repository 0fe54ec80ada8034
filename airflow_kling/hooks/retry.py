"""When to retry a request to the Scenario API, and how long to wait first.

The rules of the official client (``scenario-sdk`` 2.4.0), with one exception it lacks: a request that
submits a job is never retried when its outcome is unknown, since the API has no idempotency key and a
second attempt can create, and bill, a second job.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from enum import Enum

INITIAL_BACKOFF = 0.5
"""Seconds before the first retry when the server does not say."""
MAX_BACKOFF = 8.0
"""Seconds: the cap of the exponential backoff."""
MAX_SERVER_DELAY = 60.0
"""Seconds: the longest ``Retry-After`` honoured; a longer one is cut to this."""

RETRYABLE_STATUSES = frozenset({408, 409, 429})
SAFE_SUBMIT_STATUSES = frozenset({429, 502, 503, 504})
"""Answers that prove a job submission was not processed, so it may be sent again."""


class Verdict(Enum):
    """What to do with the outcome of one attempt."""

    DONE = "done"
    """Success, or an error that another attempt would not change."""
    RETRY = "retry"
    AMBIGUOUS = "ambiguous"
    """A job submission whose outcome is unknown: report it, never resend it."""


def verdict_for_status(status: int, headers: Mapping[str, str], *, submits_job: bool) -> Verdict:
    """Classify an HTTP answer. ``x-should-retry`` from the server wins over the status code."""
    if 200 <= status < 300:
        return Verdict.DONE
    should_retry = headers.get("x-should-retry", "").strip().lower()
    if should_retry == "true":
        return Verdict.RETRY
    if should_retry == "false":
        return Verdict.DONE
    if submits_job:
        if status in SAFE_SUBMIT_STATUSES:
            return Verdict.RETRY
        if status >= 500 or status == 408:
            return Verdict.AMBIGUOUS
        return Verdict.DONE
    if status in RETRYABLE_STATUSES or status >= 500:
        return Verdict.RETRY
    return Verdict.DONE


def verdict_for_transport_error(*, request_sent: bool, submits_job: bool) -> Verdict:
    """Classify a failure with no HTTP answer. Before the request was sent, every call may be retried."""
    if request_sent and submits_job:
        return Verdict.AMBIGUOUS
    return Verdict.RETRY


def server_delay(headers: Mapping[str, str], now: Callable[[], float] = time.time) -> float | None:
    """Seconds the server asked to wait (``retry-after-ms``, then ``Retry-After`` as seconds or an HTTP
    date), capped at :data:`MAX_SERVER_DELAY`; ``None`` when it asked nothing usable."""
    delay: float | None = None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            delay = float(raw_ms) / 1000.0
        except ValueError:
            delay = None
    raw = headers.get("retry-after")
    if delay is None and raw:
        try:
            delay = float(raw)
        except ValueError:
            try:
                delay = parsedate_to_datetime(raw).timestamp() - now()
            except (TypeError, ValueError, IndexError):
                delay = None
    if delay is None or delay <= 0:
        return None
    return min(delay, MAX_SERVER_DELAY)


def backoff_delay(retries_done: int, jitter: Callable[[], float] = random.random) -> float:
    """Capped exponential backoff with jitter that only shortens: 0.375-0.5 s, 0.75-1 s, ... up to 8 s."""
    base = min(INITIAL_BACKOFF * 2.0**retries_done, MAX_BACKOFF)
    return base * (1 - 0.25 * jitter())


def retry_delay(retries_done: int, headers: Mapping[str, str] | None = None) -> float:
    """Seconds to wait before the next attempt: the server's wish when it has one, else the backoff."""
    wished = server_delay(headers) if headers else None
    return wished if wished is not None else backoff_delay(retries_done)


def is_job_submission(method: str, path: str) -> bool:
    """Whether a request creates a billable job (``POST /generate/...``)."""
    return method.upper() == "POST" and path.lstrip("/").startswith("generate/")


def should_stop(verdict: Verdict, retries_done: int, max_retries: int) -> bool:
    """Whether an attempt's outcome is final: done, or retryable with no retry left."""
    return verdict is Verdict.DONE or (verdict is Verdict.RETRY and retries_done >= max_retries)
