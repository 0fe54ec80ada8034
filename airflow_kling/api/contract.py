"""The Scenario wire contract as both hooks speak it.

Paths, query strings, which calls submit a paid job, answers and errors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol
from urllib.parse import quote

from airflow_kling.exceptions import (
    ScenarioAPIError,
    ScenarioAuthError,
    ScenarioConfigError,
    ScenarioNotFoundError,
    ScenarioResponseError,
    ScenarioTeamLimitError,
)

USER_AGENT = "airflow-provider-kling"
MESSAGE_LIMIT = 500
"""Characters of an error body kept in an exception message."""
MAX_ANSWER_BYTES = 8 * 1024 * 1024
"""Bytes a successful API answer may hold (a page of 100 jobs is well under 1 MiB); a longer one is refused."""
ERROR_BODY_BYTES = 64 * 1024
"""Bytes of an error answer read at most: only its message is used."""
READ_CHUNK = 64 * 1024
"""Bytes an answer is read by."""


class AnswerBody:
    """An API answer's body, collected within bounds whether its size is declared or found while streaming.

    A success larger than :data:`MAX_ANSWER_BYTES` is refused, an error's body is cut at
    :data:`ERROR_BODY_BYTES`. Both hooks read through it, chunk by chunk.

    :param content_length: the answer's ``Content-Length`` header, if any.
    :raises ScenarioResponseError: a success that declares more than the limit.
    """

    def __init__(self, status: int, method: str, path: str, content_length: str | None) -> None:
        self.success = 200 <= status < 300
        self.limit = MAX_ANSWER_BYTES if self.success else ERROR_BODY_BYTES
        self.method, self.path = method, path
        self.parts: list[bytes] = []
        self.size = 0
        declared = int(content_length) if content_length and content_length.strip().isdigit() else None
        if self.success and declared is not None and declared > self.limit:
            raise self._too_large(f"declared {declared} bytes")
        self.fits = declared is not None and declared <= self.limit
        """The body declares a size within the limit: it may be read whole (HTTP ends it at that size)."""

    def add(self, chunk: bytes) -> bool:
        """Keep ``chunk``; ``False`` once no more is wanted (an error's body is cut, nothing is refused).

        :raises ScenarioResponseError: a success that grew past the limit.
        """
        room = self.limit - self.size
        if len(chunk) > room:
            if self.success:
                raise self._too_large(f"sent more than {self.limit} bytes")
            self.parts.append(chunk[:room])
            self.size = self.limit
            return False
        self.parts.append(chunk)
        self.size += len(chunk)
        return True

    def content(self) -> bytes:
        """The body read so far, as bytes."""
        return b"".join(self.parts)

    def _too_large(self, found: str) -> ScenarioResponseError:
        return ScenarioResponseError(
            f"Scenario {self.method} {self.path} answered with a body too large to read ({found}; an answer may hold "
            f"{self.limit // (1024 * 1024)} MiB): refused"
        )


UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]+")
"""Characters percent-encoding leaves as they are: an id of those alone is its own encoding."""


def api_path(template: str, *ids: str) -> str:
    """Fill a path template such as ``/jobs/{}`` with percent-encoded ids; an empty id is refused."""
    for value in ids:
        if not isinstance(value, str) or not value.strip():
            raise ScenarioConfigError(f"Expected a non-empty id for {template!r}, got {value!r}")
    return template.format(
        *(value if UNRESERVED.fullmatch(value) else quote(value, safe="") for value in ids)
    )


@dataclass(frozen=True)
class ObjectCall:
    """A call whose answer holds one object under ``key``: the request, and where its answer is."""

    method: str
    template: str
    """The path, ids as ``{}`` (see :func:`api_path`)."""
    key: str
    body: dict[str, Any] | None = None

    def path(self, *ids: str) -> str:
        """The call's path with ``ids`` filled in."""
        return api_path(self.template, *ids)

    def answer(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The object this call's answer holds under :attr:`key` (not a copy).

        :raises ScenarioResponseError: the answer holds no object there.
        """
        found = payload.get(self.key)
        if not isinstance(found, dict):
            raise ScenarioResponseError(
                f"Scenario {self.method} {self.template.replace('{}', '{id}')} answered {self.key!r} that is not "
                f"an object: {type(found).__name__}"
            )
        return found


GET_JOB = ObjectCall("GET", "/jobs/{}", "job")
CANCEL_JOB = ObjectCall("POST", "/jobs/{}/action", "job", {"action": "cancel"})
GET_ASSET = ObjectCall("GET", "/assets/{}", "asset")
GET_MODEL = ObjectCall("GET", "/models/{}", "model")
CREATE_UPLOAD = ObjectCall("POST", "/uploads", "upload")
GET_UPLOAD = ObjectCall("GET", "/uploads/{}", "upload")
COMPLETE_UPLOAD = ObjectCall("POST", "/uploads/{}/action", "upload", {"action": "complete"})


def is_job_submission(method: str, path: str, params: Mapping[str, Any] | None = None) -> bool:
    """Whether a request creates a billable job: ``POST /generate/...`` that is not a ``dryRun`` estimate."""
    if method.upper() != "POST" or not path.lstrip("/").startswith("generate/"):
        return False
    return not (params or {}).get("dryRun") and not (params or {}).get("dry_run")


def query_params(filters: Mapping[str, Any]) -> dict[str, str]:
    """Python keyword filters as the API's query string.

    CamelCase keys, comma-joined lists, lower-case booleans; ``None`` values are left out.
    """
    params: dict[str, str] = {}
    for key, value in filters.items():
        if value is None:
            continue
        head, *rest = key.split("_")
        wire_key = head + "".join(part[:1].upper() + part[1:] for part in rest)
        if isinstance(value, bool):
            params[wire_key] = "true" if value else "false"
        elif isinstance(value, list | tuple | set | frozenset):
            params[wire_key] = ",".join(str(item) for item in value)
        else:
            params[wire_key] = str(value)
    return params


def api_message(body: bytes | str) -> str:
    """The API's message in an error body, else its start; :data:`MESSAGE_LIMIT` characters at most.

    The message is JSON's ``message``, ``apiError``, ``error`` or ``detail``, with its ``hint`` when it gives
    one.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        decoded = json.loads(text)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict):
        for key in ("message", "apiError", "error", "detail"):
            value = decoded.get(key)
            if isinstance(value, str) and value:
                hint = decoded.get("hint")
                if isinstance(hint, str) and hint:
                    value = f"{value} Hint: {hint}"
                return value[:MESSAGE_LIMIT]
    return text.strip()[:MESSAGE_LIMIT] or "(empty body)"


def api_error(status: int, method: str, path: str, body: bytes | str, conn_id: str) -> ScenarioAPIError:
    """The exception for an error answer, of the class its status calls for."""
    message = api_message(body)
    if status == 429 and is_job_submission(method, path):
        return ScenarioTeamLimitError(status, method, path, message, team_limit(body))
    if status in (401, 403):
        return ScenarioAuthError(status, method, path, message, conn_id)
    if status == 404:
        return ScenarioNotFoundError(status, method, path, message)
    return ScenarioAPIError(status, method, path, message)


MAX_TEAM_LIMIT = 100
"""The largest team limit a 429 is believed about: one page of ``GET /jobs``, all that a look at the team's
jobs sees. A larger ``actionLimit`` is read as this."""


def team_limit(body: bytes | str) -> int | None:
    """The team's parallel-job limit that a 429's ``details`` name (``actionLimit``).

    At most :data:`MAX_TEAM_LIMIT`; ``None`` when the answer names none.
    """
    try:
        details = json.loads(body).get("details")
    except (ValueError, AttributeError):
        return None
    limit = details.get("actionLimit") if isinstance(details, dict) else None
    if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
        return None
    return min(limit, MAX_TEAM_LIMIT)


def decode_json(body: bytes, method: str, path: str, status: int) -> dict[str, Any]:
    """A success body as a JSON object; anything else is an API error, not a crash further on."""
    try:
        decoded = json.loads(body) if body else {}
    except ValueError:
        raise ScenarioAPIError(
            status, method, path, f"expected a JSON body, got {api_message(body)!r}"
        ) from None
    if not isinstance(decoded, dict):
        raise ScenarioAPIError(status, method, path, "expected a JSON object")
    return decoded


class Endpoint(Protocol):
    """Where and as whom a call goes (a :class:`~airflow_kling.hooks.connection.ScenarioConnectionConfig`)."""

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header's value."""

    @property
    def project_id(self) -> str | None:
        """The project the calls act in, if any."""

    def url(self, path: str) -> str:
        """The absolute URL of an API ``path``."""


class ApiCall(NamedTuple):
    """One API call as both hooks send it: URL, query, headers (with credentials) and JSON body."""

    method: str
    path: str
    url: str
    params: dict[str, str]
    headers: dict[str, str]
    data: str | None
    submits_job: bool

    def __repr__(self) -> str:  # the headers hold the credentials
        return f"ApiCall({self.method} {self.path})"


def api_call(
    config: Endpoint,
    method: str,
    path: str,
    params: Mapping[str, Any] | None,
    body: Any,
) -> ApiCall:
    """Build a call.

    ``projectId`` from the connection unless given, and POST/PUT bodies that default to ``{}`` as the official
    client sends them.
    """
    method = method.upper()
    headers = {"Authorization": config.authorization}
    data = None
    if method != "GET":
        headers["Content-Type"] = "application/json"
        data = json.dumps({} if body is None else body)
    wire_params = query_params({"project_id": config.project_id, **(params or {})})
    submits_job = is_job_submission(method, path, wire_params)
    return ApiCall(method, path, config.url(path), wire_params, headers, data, submits_job)
