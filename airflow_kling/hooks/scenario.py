"""The synchronous Scenario hook, for operators and for code that runs in a worker."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

import requests
from airflow.providers.http.hooks.http import HttpHook
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from airflow_kling.api.contract import (
    CANCEL_JOB,
    GET_ASSET,
    GET_JOB,
    GET_MODEL,
    READ_CHUNK,
    USER_AGENT,
    AnswerBody,
    ObjectCall,
    api_call,
    api_error,
    api_path,
    decode_json,
)
from airflow_kling.api.origins import allowed_hosts_setting, checked_storage_url
from airflow_kling.api.redaction import redact_http_library_logs
from airflow_kling.api.retry import Attempts, certificate_problem
from airflow_kling.exceptions import ScenarioError, ScenarioNotFoundError, ScenarioResponseError
from airflow_kling.hooks.connection import (
    DEFAULT_CONN_ID,
    DEFAULT_CONNECT_TIMEOUT,
    ScenarioConnectionConfig,
    ScenarioHookIdentity,
)
from airflow_kling.jobs.status import checked_job
from airflow_kling.jobs.submission import DEFAULT_SETTLE_SECONDS
from airflow_kling.models.schema import finite_number
from airflow_kling.version_compat import AIRFLOW_V_3_2_PLUS

MAX_PAGES = 200
"""Pages of ``GET /jobs`` one listing reads at most (20 000 jobs at 100 a page)."""
DESCRIPTOR_TTL = 600.0
"""Seconds a model's descriptor (``GET /models/{modelId}``) is kept in a process before it is asked again."""
UNAVAILABLE_DESCRIPTOR_TTL = 60.0
"""Seconds a model's descriptor that could not be had (a 404, an error) is not asked again."""
_descriptors: dict[tuple[str, str | None, str], tuple[float, dict[str, Any] | None]] = {}

if TYPE_CHECKING:
    from airflow_kling.files.uploads import UploadSource
    from airflow_kling.jobs.submission import RecordStore, Submission


_USE_REQUEST = (
    "ScenarioHook does not offer HttpHook's run methods (they would send no credentials): use "
    "hook.request(method, path, params=..., body=...) or the hook's API methods"
)


class ScenarioHook(ScenarioHookIdentity, HttpHook):
    """Call the Scenario REST API with the credentials of an Airflow connection of type ``scenario``.

    The connection's login is the API key and its password the API secret (sent as HTTP Basic auth);
    its host is the full base URL including ``/v1`` (default ``https://api.cloud.scenario.com/v1``).
    Extra fields: ``project_id`` (sent as ``projectId``), ``timeout`` (seconds, default 60),
    ``max_retries`` (default 4), ``web_url`` (the job links' base), and for every request, file URLs
    included: ``proxies`` (a proxy URL, or one by scheme), ``verify`` (``false``, or a CA bundle's path) and
    ``cert`` (a client certificate's path, or certificate and key). Without a key and secret on the connection, the environment variables
    ``SCENARIO_SDK_API_KEY`` and ``SCENARIO_SDK_API_SECRET`` are used, as the official clients do.

    Connection errors, 408, 409, 429 and 5xx answers are retried with capped exponential backoff,
    honouring ``Retry-After``, ``retry-after-ms`` and ``x-should-retry``; a job submission whose outcome
    is unknown is never retried (see :class:`~airflow_kling.exceptions.ScenarioAmbiguousSubmitError`).

    :param scenario_conn_id: the Airflow connection id; default ``scenario_default``.
    :param project_id: the project to act in, overriding the connection's ``project_id``; default none.
    """

    hook_name = "Scenario"

    def __init__(self, scenario_conn_id: str = DEFAULT_CONN_ID, *, project_id: str | None = None) -> None:
        super().__init__(method="GET", http_conn_id=scenario_conn_id)
        self.scenario_conn_id = scenario_conn_id
        self.project_id = project_id

    if not AIRFLOW_V_3_2_PLUS:  # Airflow 3.1 reads the connection form from the hook, newer lines from
        # get_provider_info(), where it is declared once (and where 3.3 wants it, without a warning).

        @classmethod
        def get_ui_field_behaviour(cls) -> dict[str, Any]:
            """The connection form's standard fields (Airflow 3.1): hidden, relabelled, with placeholders."""
            behaviour = _connection_type()["ui-field-behaviour"]
            return {
                "hidden_fields": list(behaviour["hidden-fields"]),
                "relabeling": dict(behaviour["relabeling"]),
                "placeholders": dict(behaviour["placeholders"]),
            }

        @classmethod
        def get_connection_form_widgets(cls) -> dict[str, Any]:
            """The connection form's extra fields (Airflow 3.1), from the same declaration."""
            from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
            from flask_babel import lazy_gettext
            from wtforms import IntegerField, StringField

            widgets: dict[str, Any] = {}
            for name, spec in _connection_type()["conn-fields"].items():
                field = IntegerField if "integer" in spec["schema"]["type"] else StringField
                widgets[name] = field(
                    lazy_gettext(spec["label"]), widget=BS3TextFieldWidget(), description=spec["description"]
                )
            return widgets

    @cached_property
    def config(self) -> ScenarioConnectionConfig:
        """The connection, read once: base URL, credentials, project, timeout and retries."""
        from airflow_kling.version_compat import AirflowNotFoundException

        try:
            conn = self.get_connection(self.scenario_conn_id)
        except AirflowNotFoundException:
            conn = None
        return self._config_of(conn)

    def get_conn(
        self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None
    ) -> requests.Session:
        """A keep-alive ``requests`` session for the Scenario base URL.

        The session carries no credentials: they are added to API calls only, so that presigned storage
        URLs (uploads, downloads) never receive them.
        """
        redact_http_library_logs()  # presigned part and file URLs go through this session too
        self.base_url = self.config.base_url
        self._base_url_initialized = True
        session = self._configure_session_from_mount_adapters(requests.Session())
        session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        session.headers.update(headers or {})
        return session

    @cached_property
    def session(self) -> requests.Session:
        """The hook's one keep-alive session (see :meth:`get_conn`)."""
        return self.get_conn()

    # HttpHook's generic calls go through get_conn()'s session, which carries no credentials: a call such as
    # hook.run("jobs") would silently send an unauthenticated request. The hook does not offer them.

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Not available on this hook: use :meth:`request` (authenticated, with the retry rules)."""
        raise NotImplementedError(_USE_REQUEST)

    def run_and_check(self, *args: Any, **kwargs: Any) -> Any:
        """Not available on this hook: use :meth:`request` (authenticated, with the retry rules)."""
        raise NotImplementedError(_USE_REQUEST)

    def run_with_advanced_retry(self, *args: Any, **kwargs: Any) -> Any:
        """Not available on this hook: use :meth:`request` (authenticated, with the retry rules)."""
        raise NotImplementedError(_USE_REQUEST)

    # -- the request loop ----------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> tuple[int, dict[str, Any]]:
        """Send one API call with the retry rules of :mod:`airflow_kling.api.retry`.

        :param method: HTTP method.
        :param path: path relative to the base URL, e.g. ``/jobs/job_x`` (ids already encoded).
        :param params: query parameters (Python names are turned into the API's camelCase).
        :param body: JSON body; POST and PUT send ``{}`` when it is ``None``, as the official client does.
        :return: the HTTP status (200, or 269 for a dry run) and the decoded JSON object.
        """
        call = api_call(self.config, method, path, params, body)
        response = self.send(
            call.method,
            call.url,
            label=call.path,
            submits_job=call.submits_job,
            make_kwargs=lambda: {"params": call.params, "data": call.data, "headers": call.headers},
        )
        status = response.status_code
        if 200 <= status < 300:
            return status, decode_json(response.content, call.method, path, status)
        raise api_error(status, call.method, path, response.content, self.config.conn_id)

    def send(
        self,
        method: str,
        url: str,
        *,
        label: str,
        make_kwargs: Callable[[], dict[str, Any]],
        submits_job: bool = False,
        stream: bool = False,
    ) -> requests.Response:
        """Send a request, retrying what :mod:`airflow_kling.api.retry` says may be retried.

        Used for API calls and for presigned storage URLs alike; only API calls add credentials. A URL outside
        the API's base URL is fetched only where :func:`~airflow_kling.api.origins.checked_storage_url` allows,
        and its redirects are not followed.

        :param label: what logs and errors call the request (never a signed URL, which is a credential).
        :param make_kwargs: builds the ``requests`` arguments afresh for each attempt (a body stream must
            restart from its beginning).
        :param stream: leave the body to the caller (a file); otherwise it is read here, a success of more
            than :data:`~airflow_kling.api.contract.MAX_ANSWER_BYTES` refused and an error's cut.
        :return: the last response: a success, an error another attempt would not change, or the last
            retryable error once ``max_retries`` are used up.
        :raises ScenarioResponseError: an answer too large to read.
        """
        to_api = url.startswith(f"{self.config.base_url}/")
        if not to_api:  # a URL an API answer named (a signed file, a presigned part): only where it may be
            checked_storage_url(url, self.config.base_url, allowed_hosts_setting())
        attempts = Attempts(method, label, submits_job, self.config.max_retries, where=self.config.where(url))
        while True:
            try:
                response = self.session.request(
                    method,
                    url,
                    timeout=(DEFAULT_CONNECT_TIMEOUT, self.config.timeout),
                    stream=True,  # read here within bounds, unless the caller streams it
                    allow_redirects=to_api,  # a file host's redirect is not followed: no other origin
                    **self.config.requests_options(),
                    **make_kwargs(),
                )
                if not stream:
                    _read_bounded(response, method, label)
            except requests.exceptions.RequestException as exc:
                # Only the class name goes on: the exception's text holds the URL, which may be signed.
                refused = certificate_problem(exc) if isinstance(exc, requests.exceptions.SSLError) else None
                step = attempts.failed(
                    type(exc).__name__, request_sent=request_was_sent(exc), certificate=refused
                )
            else:
                step = attempts.answered(response.status_code, response.headers)
                if step.final:
                    self.log.debug("Scenario %s %s -> %d", method, label, response.status_code)
                    return response
                response.close()
            if step.error is not None:
                raise step.error  # outside the except block: no chain back to a requests error
            self.log.warning("%s in %.2f s", step.reason, step.delay)
            time.sleep(step.delay)

    # -- jobs ----------------------------------------------------------------------------------------------

    def run_model(self, model_id: str, inputs: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Submit a generation with any custom model (``POST /generate/custom/{modelId}``).

        :param model_id: e.g. ``model_kling-lip-sync``.
        :param inputs: the model's inputs by their wire names; sent as the JSON body itself.
        :param dry_run: ask for a cost estimate at the API tier (``dryRun=api``, answered with HTTP 269)
            instead of creating a job.
        :return: the decoded response: the job at ``["job"]`` (id at ``["job"]["jobId"]``) and
            ``creativeUnitsCost``.
        """
        params = {"dry_run": "api"} if dry_run else None
        _, payload = self.request(
            "POST", api_path("/generate/custom/{}", model_id), params=params, body=dict(inputs)
        )
        return payload

    def estimate_cost(self, model_id: str, inputs: Mapping[str, Any]) -> float | None:
        """The creative units a generation would cost (a ``dryRun`` estimate: no job, nothing paid).

        ``None`` when the API gives no figure, or something that is not a finite number.
        """
        return finite_number(self.run_model(model_id, inputs, dry_run=True).get("creativeUnitsCost"))

    def submit_once(
        self,
        model_id: str,
        inputs: Mapping[str, Any],
        *,
        store: RecordStore | None = None,
        settle_seconds: float = DEFAULT_SETTLE_SECONDS,
        adopt_since: float | None = None,
        reattach: bool = True,
        permanent_failures: Sequence[str] = (),
    ) -> Submission:
        """Submit a generation and pay for one job at most, even when the answer to the ``POST`` is lost.

        :meth:`run_model` never resends a submission whose outcome is unknown (HTTP 500/502/504, a dropped
        connection, a read timeout after sending): it raises
        :class:`~airflow_kling.exceptions.ScenarioAmbiguousSubmitError`. This method then looks for the job
        that submission may have created (``GET /jobs?createdAfter=...``, matched on the model and inputs)
        for up to ``settle_seconds``, adopts it when found, and submits again only when none appeared.
        See :mod:`airflow_kling.jobs.submission` for the guarantee and its one limit.

        :param store: where the intent and the job id are recorded, so that a later call (a task's retry)
            with the same store follows the same job; default in memory, for this call only.
        :param settle_seconds: seconds to keep looking for the job of a lost answer; default 90.
        :param adopt_since: with an empty store, adopt a matching job created after this time (epoch
            seconds) that has not failed; default none.
        :param reattach: follow the job a record in ``store`` names, while it runs or once it succeeded;
            default ``True``.
        :param permanent_failures: patterns of job errors that no retry can change: an earlier try's job
            that failed with one is returned (``how="reattached"``), never paid for again; default none.
        :raises ScenarioTeamLimitError: the team runs as many jobs as it may (HTTP 429): nothing was
            created, and the record says so; call again once a job has ended.
        :return: the :class:`~airflow_kling.jobs.submission.Submission`: the job, its cost, and ``how`` it was
            obtained (``submitted``, ``adopted`` or ``reattached``).
        """
        from airflow_kling.jobs.submission import MemoryRecordStore, SubmitOnce

        return SubmitOnce(
            self,
            store if store is not None else MemoryRecordStore(),
            settle_seconds=settle_seconds,
            adopt_since=adopt_since,
            reattach=reattach,
            permanent_failures=tuple(permanent_failures),
        )(model_id, inputs)

    def submit_job(self, model_id: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Submit a generation, paying for one job at most (:meth:`submit_once`).

        The job object, the shape :meth:`get_job`, :meth:`cancel_job` and :meth:`wait_for_job` return too (its
        id at ``["jobId"]``).

        For ``@task`` code: ``hook.wait_for_job(hook.submit_job(model_id, inputs)["jobId"])``. :meth:`run_model`
        is the wire call itself: the API's whole answer, the job under ``"job"`` beside its cost.
        """
        return self.submit_once(model_id, inputs).job

    def get_object(self, call: ObjectCall, *ids: str) -> dict[str, Any]:
        """Send ``call`` (e.g. :data:`~airflow_kling.api.contract.GET_JOB`) for ``ids``; its answer's object."""
        _, payload = self.request(call.method, call.path(*ids), body=call.body)
        return call.answer(payload)

    def get_job(self, job_id: str) -> dict[str, Any]:
        """The job object of ``GET /jobs/{jobId}`` (status, progress, metadata, statusHistory, ...)."""
        return checked_job(self.get_object(GET_JOB, job_id))

    def wait_for_job(
        self, job_id: str, *, timeout: float = 3600, poll_interval: float = 10
    ) -> dict[str, Any]:
        """Poll a job until it ends, as the operators do in a worker: for ``@task`` code.

        Passing errors are waited through with backoff; polls are aimed at the end the job's progress
        predicts.

        :param timeout: seconds to wait at most; default 3600. The job is left running when they pass.
        :param poll_interval: seconds between polls; default 10.
        :return: the job, once it succeeded.
        :raises ScenarioJobError: it failed or was canceled (its ``metadata.error`` and ``hint`` in the message,
            the job as ``job``), or ``timeout`` seconds passed (status ``timeout``).
        """
        from airflow_kling.jobs.events import successful_job

        return successful_job(
            self.poll_until_ended(job_id, deadline=time.time() + timeout, poll_interval=poll_interval)
        )

    def poll_until_ended(
        self,
        job_id: str,
        *,
        deadline: float,
        poll_interval: float = 10,
        sleep: Callable[[float], None] = time.sleep,
    ) -> dict[str, Any]:
        """Poll ``GET /jobs/{jobId}`` until the job ends, whatever its ending; the ended job.

        :param deadline: wall-clock time (epoch seconds) to stop at.
        :param poll_interval: seconds between polls (no stretching: a worker slot is held anyway); default 10.
        :raises ScenarioJobError: status ``timeout`` at the deadline (the job is left running).
        """
        from airflow_kling.exceptions import ScenarioJobError
        from airflow_kling.jobs.polling import JobWatch

        watch = JobWatch(job_id, float(poll_interval), float(poll_interval), self.log)
        while True:
            try:
                job = self.get_job(job_id)
                delay = watch.seen(job)
            except ScenarioError as error:
                delay = watch.failed(error)
            else:
                if delay is None:
                    return job
            left = deadline - time.time()
            if left <= 0:
                raise ScenarioJobError(
                    job_id, "timeout", f"Scenario job {job_id} did not end by its deadline"
                )
            sleep(min(delay, left))

    def get_model(self, model_id: str) -> dict[str, Any]:
        """The model of ``GET /models/{modelId}``: its ``inputs`` describe names, defaults and limits."""
        return self.get_object(GET_MODEL, model_id)

    def model_descriptor(
        self, model_id: str, *, clock: Callable[[], float] = time.monotonic
    ) -> dict[str, Any] | None:
        """:meth:`get_model`, asked at most once per process, connection and model every 600 s.

        The expiry is :data:`DESCRIPTOR_TTL`. ``None`` when it cannot be had (a private model's 404, an error
        after the retries), and then not asked again for :data:`UNAVAILABLE_DESCRIPTOR_TTL` seconds.
        """
        key = (self.config.base_url, self.config.project_id, model_id)
        now = clock()
        cached = _descriptors.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            descriptor: dict[str, Any] | None = self.get_model(model_id)
        except ScenarioNotFoundError:
            descriptor = None
        except ScenarioError as error:
            self.log.warning("The descriptor of model %s could not be had: %s", model_id, error)
            descriptor = None
        if not isinstance(descriptor, dict):
            descriptor = None
        _descriptors[key] = (now + (DESCRIPTOR_TTL if descriptor else UNAVAILABLE_DESCRIPTOR_TTL), descriptor)
        return descriptor

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Ask the API to cancel a job; returns the job object. The API may refuse (an error is raised)."""
        return checked_job(self.get_object(CANCEL_JOB, job_id))

    def list_jobs(self, *, max_pages: int = MAX_PAGES, **filters: Any) -> Iterator[dict[str, Any]]:
        """Iterate over jobs, page by page, until the API sends no ``nextPaginationToken``.

        Each job's types are checked (see :func:`~airflow_kling.jobs.status.checked_job`).

        :param max_pages: pages read at most; default :data:`MAX_PAGES` (200).
        :param filters: ``GET /jobs`` filters by Python or wire name, e.g. ``status="success"``,
            ``types=["custom"]``, ``page_size=100``, ``created_after="2026-01-01T00:00:00Z"``.
        :raises ScenarioResponseError: a page repeats a token already followed, or ``max_pages`` were read
            with a token still given: the listing would not end.
        """
        token: str | None = None
        followed: set[str] = set()
        for _ in range(max_pages):
            params = dict(filters)
            if token:
                params["pagination_token"] = token
            _, payload = self.request("GET", "/jobs", params=params)
            jobs = payload.get("jobs") or []
            if not isinstance(jobs, list):
                raise ScenarioResponseError("GET /jobs answered 'jobs' that is not a list")
            for job in jobs:
                yield checked_job(job)
            token = payload.get("nextPaginationToken")
            if not token:  # an empty page may still carry a token: only its absence ends the list
                return
            if not isinstance(token, str) or token in followed:
                raise ScenarioResponseError(
                    f"GET /jobs answered a nextPaginationToken it had already given ({str(token)[:40]!r}): "
                    "the listing would never end, so it was stopped"
                )
            followed.add(token)
        raise ScenarioResponseError(
            f"GET /jobs still gave a nextPaginationToken after {max_pages} pages: the listing was stopped there"
        )

    # -- assets --------------------------------------------------------------------------------------------

    def get_asset(self, asset_id: str) -> dict[str, Any]:
        """The asset object of ``GET /assets/{assetId}``, with its temporary signed ``url``."""
        return self.get_object(GET_ASSET, asset_id)

    def get_download_url(self, asset_id: str) -> str:
        """A fresh signed URL for an asset's original file (``POST /assets/{assetId}/download``)."""
        _, payload = self.request("POST", api_path("/assets/{}/download", asset_id), body={})
        return str(payload["url"])

    def upload_asset(
        self,
        source: UploadSource,
        *,
        kind: str | None = None,
        file_name: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """Upload a file as a Scenario asset through ``POST /uploads`` and presigned part URLs.

        Parts are streamed from the source, never held whole in memory.

        :param source: a local path, an ``ObjectStoragePath`` or a seekable binary file object.
        :param kind: ``video``, ``audio``, ``image``, ...; inferred from the file name when not given.
        :param file_name: the name the asset gets; default the source's name.
        :param content_type: MIME type; inferred from the file name when not given.
        :return: the new asset id.
        """
        from airflow_kling.files.uploads import upload_asset

        return upload_asset(self, source, kind=kind, file_name=file_name, content_type=content_type)

    # -- Airflow UI ----------------------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """One cheap authenticated call (``GET /jobs?pageSize=1``); reports success or the API's message."""
        try:
            self.request("GET", "/jobs", params={"page_size": 1})
        except ScenarioError as exc:
            return False, str(exc)
        return True, f"Connected to the Scenario API at {self.config.base_url}"


def _connection_type() -> dict[str, Any]:
    from airflow_kling import get_provider_info

    return dict(get_provider_info()["connection-types"][0])


def _read_bounded(response: requests.Response, method: str, label: str) -> None:
    """Read a response's body into ``response.content``, within the bounds of an ``AnswerBody``.

    The connection is dropped when the body is cut or refused, so that its rest is never read.
    """
    try:
        answer = AnswerBody(response.status_code, method, label, response.headers.get("Content-Length"))
        for chunk in response.iter_content(READ_CHUNK):
            if not answer.add(chunk):
                response.close()
                break
    except ScenarioResponseError:
        response.close()
        raise
    response._content = answer.content()


def request_was_sent(exc: requests.exceptions.RequestException) -> bool:
    """Whether a failed request may have reached the server (so a retry could repeat its effect)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return not isinstance(reason, NewConnectionError | ConnectTimeoutError)
