"""When to retry a request to the Scenario API, and how long to wait first.

One state machine that both hooks drive, for API calls and presigned storage URLs alike.

The rules of the official client (``scenario-sdk`` 2.4.0), with one exception it lacks: a request that
submits a job is never resent when its outcome is unknown, since the API has no idempotency key and a
second attempt can create, and bill, a second job. Only 429 and 503 prove that a submission was refused
before any work; a 500, 502 or 504, a dropped connection or a read timeout after the request was sent
prove nothing, so they end in :class:`~airflow_kling.exceptions.ScenarioAmbiguousSubmitError` (the
caller then looks for the job: :mod:`airflow_kling.jobs.submission`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from airflow_kling.exceptions import ScenarioAmbiguousSubmitError, ScenarioError, ScenarioTransportError

INITIAL_BACKOFF = 0.5
"""Seconds before the first retry when the server does not say."""
MAX_BACKOFF = 8.0
"""Seconds: the cap of the exponential backoff."""
MAX_SERVER_DELAY = 60.0
"""Seconds: the longest ``Retry-After`` honoured; a longer one is cut to this."""

RETRYABLE_STATUSES = frozenset({408, 409, 429})
SAFE_SUBMIT_STATUSES = frozenset({429, 503})
"""Answers that prove a job submission was refused before any work, so it may be sent again."""
REFUSED_SUBMIT_STATUSES = frozenset({400, 401, 403, 404, 422})
"""Answers that refuse a job submission for what it is (its inputs, the credentials, the model): nothing was
created or billed, and the same request would be refused again, so no retry is made and no job looked for."""


def is_retryable_status(status: int) -> bool:
    """Whether an answer to a read (or any call that creates nothing) is worth another attempt."""
    return status in RETRYABLE_STATUSES or status >= 500


def server_delay(headers: Mapping[str, str], now: Callable[[], float] = time.time) -> float | None:
    """Seconds the server asked to wait, capped at :data:`MAX_SERVER_DELAY`.

    Read from ``retry-after-ms``, then ``Retry-After`` as seconds or an HTTP date; ``None`` when it asked
    nothing usable.
    """
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


def certificate_problem(error: BaseException) -> str | None:
    """Why a TLS certificate was refused, when ``error`` (a ``requests`` or ``aiohttp`` error) comes from one.

    OpenSSL's reason, such as ``unable to get local issuer certificate``; else ``None``. Looks through the
    wrappers (``__cause__``, ``__context__``, ``reason``, ``certificate_error``, ``args``) at most 12 deep.
    """
    import ssl

    seen: set[int] = set()
    pending: list[object] = [error]
    while pending and len(seen) < 12:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        reason = getattr(current, "verify_message", None)  # aiohttp's wrapper is one too, but bare
        if isinstance(current, ssl.SSLCertVerificationError) and isinstance(reason, str) and reason:
            return f"certificate verify failed: {reason}"
        pending.extend(
            [
                current.__cause__,
                current.__context__,
                getattr(current, "reason", None),
                getattr(current, "certificate_error", None),
                *current.args,
            ]
        )
    return None


@dataclass(frozen=True)
class Step:
    """What to do after one attempt.

    Return its answer, raise ``error``, or wait ``delay`` seconds and send again (``reason`` says why, for the
    log).
    """

    delay: float = 0.0
    error: ScenarioError | None = None
    reason: str = ""
    final: bool = False


FINAL = Step(final=True)
"""Hand the answer to the caller: the step of every final answer (a step is never changed)."""


@dataclass
class Attempts:
    """The retry state of one request.

    Each hook sends, reports the outcome here, and does what the returned :class:`Step` says; no other code
    decides whether to retry.

    :param method: HTTP method.
    :param label: what logs and errors call the request: an API path, or a name such as ``upload part 2``
        for a presigned URL (a signed URL is a credential and never named).
    :param submits_job: the request creates a billable job (see :func:`airflow_kling.api.contract.is_job_submission`).
    :param max_retries: retries after the first attempt.
    :param jitter: a source of numbers in ``[0, 1)`` for the backoff; tests inject a fixed one.
    :param where: the host and connection the request goes to, named when no answer ever came (e.g.
        ``api.cloud.scenario.com (Airflow connection 'scenario_default')``); default none.
    """

    method: str
    label: str
    submits_job: bool
    max_retries: int
    jitter: Callable[[], float] = field(default=random.random, repr=False)
    retries: int = 0
    where: str = ""

    def answered(self, status: int, headers: Mapping[str, str]) -> Step:
        """An HTTP answer came back. A final step means: hand this answer to the caller."""
        if 200 <= status < 300:
            return FINAL
        should_retry = headers.get("x-should-retry", "").strip().lower()
        if should_retry == "false":
            return FINAL
        if self.submits_job and status == 429 and server_delay(headers) is None:
            # The team's parallel-job ceiling (or a refusal that names no wait): an immediate retry only
            # repeats it. The caller waits for a slot (:class:`~airflow_kling.exceptions.ScenarioTeamLimitError`).
            return FINAL
        if should_retry != "true" and self.submits_job and status not in SAFE_SUBMIT_STATUSES:
            if status >= 500 or status == 408:
                return Step(error=self._ambiguous(f"HTTP {status}"))
            return FINAL
        if should_retry != "true" and not is_retryable_status(status):
            return FINAL
        if self.retries >= self.max_retries:
            return FINAL
        return self._again(f"answered HTTP {status}", server_delay(headers))

    def failed(self, error_name: str, *, request_sent: bool, certificate: str | None = None) -> Step:
        """No answer.

        ``error_name`` is the transport error's class name (its text may hold a signed URL); ``certificate``
        the reason a TLS certificate was refused (:func:`certificate_problem`), which no retry changes: it
        fails at once, saying what to set.
        """
        if certificate is not None:
            return Step(
                error=ScenarioTransportError(
                    f"Scenario {self.method} {self.label}{f' to {self.where}' if self.where else ''} failed: "
                    f"the server's TLS certificate was refused ({certificate}). Where the host, or a proxy "
                    "that inspects TLS, presents a certificate of a private CA, name that CA's bundle (a PEM "
                    "file) in the connection's extra field 'verify'; a client certificate goes in 'cert'."
                )
            )
        if request_sent and self.submits_job:
            return Step(error=self._ambiguous(error_name))
        if self.retries >= self.max_retries:
            return Step(
                error=ScenarioTransportError(
                    f"Scenario {self.method} {self.label}{f' to {self.where}' if self.where else ''} failed "
                    f"after {self.retries + 1} attempts: {error_name}"
                )
            )
        return self._again(f"failed: {error_name}", None)

    def _again(self, reason: str, wished: float | None) -> Step:
        delay = wished if wished is not None else backoff_delay(self.retries, self.jitter)
        self.retries += 1
        return Step(delay=delay, reason=f"Scenario {self.method} {self.label} {reason}; retry {self.retries}")

    def _ambiguous(self, what: str) -> ScenarioAmbiguousSubmitError:
        return ScenarioAmbiguousSubmitError(
            f"Scenario {self.method} {self.label} ended with {what} after the request was sent: a job may "
            "have been created and billed, so it was not sent again."
        )
