"""The provider's one exception family.

Every error raised by the hooks, operators, sensor and trigger derives from :class:`ScenarioError`.
None of them ever carries the API secret or the ``Authorization`` header: messages are built from
the HTTP status, the method, the path and the API's own message only.
"""

from __future__ import annotations

from typing import Any


class ScenarioError(Exception):
    """Base class of every error raised by ``airflow_kling``.

    A plain ``Exception`` (Airflow retries a task on any), so that the media tools and the emulator run
    without importing Airflow at all.
    """


class ScenarioCredentialsError(ScenarioError):
    """No API key and secret could be found for a connection; raised before any request."""


class ScenarioConfigError(ScenarioError, ValueError):
    """A connection field or an argument has a value the provider cannot use."""


class ScenarioAPIError(ScenarioError):
    """The Scenario API answered with an error status.

    :param status: HTTP status code of the last answer.
    :param method: HTTP method of the request (``GET``, ``POST``, ...).
    :param path: API path of the request, relative to the base URL (``/jobs/job_x``).
    :param message: the API's own message, or the start of the body when it has none.
    """

    def __init__(self, status: int, method: str, path: str, message: str) -> None:
        self.status = status
        self.method = method
        self.path = path
        self.api_message = message
        super().__init__(f"Scenario API {method} {path} answered HTTP {status}: {message}")


class ScenarioAuthError(ScenarioAPIError):
    """401/403: the connection's credentials were refused. The message names the connection id."""

    def __init__(self, status: int, method: str, path: str, message: str, conn_id: str) -> None:
        self.conn_id = conn_id
        super().__init__(status, method, path, message)
        self.args = (f"{self.args[0]} (check the API key and secret of the Airflow connection {conn_id!r})",)


class ScenarioNotFoundError(ScenarioAPIError):
    """404: the job, asset, upload or model does not exist (or is not visible to these credentials)."""


class ScenarioTeamLimitError(ScenarioAPIError):
    """429 on a job submission.

    The team already runs as many jobs as its plan allows (``details.actionName`` ``parallel-custom-jobs``),
    or the API asked for no particular wait. Nothing was created: the submission may be sent again once a job
    ends.

    :param limit: the team's limit of parallel jobs (``details.actionLimit``), when the API said it.
    """

    def __init__(self, status: int, method: str, path: str, message: str, limit: int | None) -> None:
        self.limit = limit
        super().__init__(status, method, path, message)


class ScenarioTransportError(ScenarioError):
    """The API could not be reached (connection refused, reset or timed out) after every retry."""


class ScenarioAmbiguousSubmitError(ScenarioError):
    """A job submission may or may not have created (and billed) a job.

    Raised instead of retrying a ``POST /generate/...`` whose answer was lost (HTTP 500, a read timeout
    or a dropped connection after the request was sent): retrying it blindly could bill a second job.
    """


class ScenarioUploadError(ScenarioError):
    """An asset upload failed: the server marked it ``failed``, or the source cannot be uploaded."""


class ScenarioDownloadError(ScenarioError):
    """A signed URL could not be downloaded completely after every retry."""


class ScenarioResponseError(ScenarioError):
    """An API answer the provider will not act on.

    An id, a media type or a location of another shape than the API's (a broken or compromised API, or an
    emulator left open). Raised before anything is written.
    """


class ScenarioValidationError(ScenarioError, ValueError):
    """Bad input to an operator, refused before any paid call. The message names the field and the limit."""


class ScenarioJobError(ScenarioError):
    """A job ended in ``failure`` or ``canceled``, or could not be waited for.

    :param job_id: the Scenario job id.
    :param status: the job's last status (or ``timeout``/``error`` when it could not be waited for).
    :param message: what went wrong, including the job's ``metadata.error`` and ``metadata.hint``.
    :param job: the last job object seen, when there is one.
    """

    def __init__(self, job_id: str, status: str, message: str, job: dict[str, Any] | None = None) -> None:
        self.job_id = job_id
        self.status = status
        self.job = job
        super().__init__(message)


class MediaError(ScenarioError):
    """A media file cannot be read or made to fit.

    Not media, no video stream, truncated, empty, or an aspect ratio no scaling can fit. The message names the
    file.
    """
