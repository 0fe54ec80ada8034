"""The asynchronous Scenario hook, for triggers running in the triggerer's event loop."""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow.sdk import BaseHook

from airflow_kling.api.contract import (
    CANCEL_JOB,
    GET_ASSET,
    GET_JOB,
    READ_CHUNK,
    USER_AGENT,
    AnswerBody,
    ObjectCall,
    api_call,
    api_error,
    decode_json,
)
from airflow_kling.api.retry import Attempts, certificate_problem
from airflow_kling.hooks.connection import (
    DEFAULT_CONN_ID,
    DEFAULT_CONNECT_TIMEOUT,
    ScenarioConnectionConfig,
    ScenarioHookIdentity,
)
from airflow_kling.jobs.status import checked_job

if TYPE_CHECKING:
    import ssl

    import aiohttp
    import yarl

CONNECTION_POOL_LIMIT = 100
"""Open connections at most per event loop, shared by every hook and trigger in it."""

_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
    weakref.WeakKeyDictionary()
)
_leases: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, int] = weakref.WeakKeyDictionary()


def shared_session() -> aiohttp.ClientSession:
    """The one ``aiohttp`` session of the running event loop, created on first use.

    Every async hook (and so every trigger) in a loop shares it and its connection pool: a triggerer
    running thousands of jobs keeps a few keep-alive connections instead of a session per poll. It
    carries no credentials; each API call adds its own ``Authorization`` header. Each request names its proxy
    (:attr:`~airflow_kling.hooks.connection.ScenarioConnectionConfig.api_proxy`): aiohttp's ``trust_env``
    would also look for a ``.netrc`` in a thread on every request, which cost a triggerer more than the poll
    itself.
    """
    import aiohttp

    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONNECTION_POOL_LIMIT),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )
        _sessions[loop] = session
    return session


class session_lease:  # named as the function it was: ``async with session_lease() as session``
    """Use the loop's shared session for the duration of an ``async with`` block.

    The last lease to end closes it, so that a loop that ends (``airflow dags test``, a script) leaves no
    unclosed session behind.
    """

    __slots__ = ("loop",)

    async def __aenter__(self) -> aiohttp.ClientSession:
        self.loop = loop = asyncio.get_running_loop()
        _leases[loop] = _leases.get(loop, 0) + 1
        return shared_session()

    async def __aexit__(self, *exc: object) -> None:
        _leases[self.loop] -= 1
        if _leases[self.loop] == 0:
            await close_shared_session()


async def close_shared_session() -> None:
    """Close the running loop's shared session (for programs that own their event loop)."""
    session = _sessions.pop(asyncio.get_running_loop(), None)
    if session is not None:
        await session.close()


CONNECTION_CACHE_SECONDS = 60.0
"""How long a connection read by one async hook serves the others of the process (a rotated secret is
picked up after at most this long)."""
_configs: dict[tuple[str, str | None], tuple[float, asyncio.Future[ScenarioConnectionConfig]]] = {}


async def _cached_config(
    conn_id: str, project_id: str | None, read: Callable[[], Awaitable[ScenarioConnectionConfig]]
) -> ScenarioConnectionConfig:
    """One lookup per connection and period, however many hooks ask at once (they await the same one)."""
    key = (conn_id, project_id)
    now = time.monotonic()
    cached = _configs.get(key)
    if cached is not None and cached[0] > now and cached[1].get_loop() is asyncio.get_running_loop():
        future = cached[1]
        if not future.done() or future.exception() is None:
            return await asyncio.shield(future)
    future = asyncio.ensure_future(read())
    _configs[key] = (now + CONNECTION_CACHE_SECONDS, future)
    try:
        return await asyncio.shield(future)
    except BaseException:
        _configs.pop(key, None)  # a failed lookup is not cached
        raise


@functools.cache
def _client_timeout(seconds: float) -> aiohttp.ClientTimeout:
    """A bound on a whole request, ``seconds``; a new connection's connect within it, at most
    :data:`DEFAULT_CONNECT_TIMEOUT`.

    One timer a request: a bound on each socket read moves its timer at every chunk received, and a bound on
    taking a connection from the pool (aiohttp's ``connect``) adds a timer to each request that waits for one.
    """
    import aiohttp

    return aiohttp.ClientTimeout(total=seconds, sock_connect=min(seconds, DEFAULT_CONNECT_TIMEOUT))


class PreparedCall(NamedTuple):
    """An API call built by :meth:`ScenarioAsyncHook.prepare`: what each of its sends repeats.

    Its headers hold the connection's credentials: its ``repr`` names only the method and path.
    """

    method: str
    path: str
    """The API path, as errors and logs name the call (never the URL's query)."""
    url: yarl.URL
    data: str | None
    headers: dict[str, str]
    submits_job: bool
    max_retries: int
    where: str
    """The host and connection, named when no answer came."""
    timeout: aiohttp.ClientTimeout
    proxy: str | None
    ssl: ssl.SSLContext | bool
    conn_id: str

    def __repr__(self) -> str:
        return f"PreparedCall({self.method} {self.path})"

    def open(self, session: aiohttp.ClientSession) -> aiohttp.client._RequestContextManager:
        """One request of this call through ``session``, to be entered with ``async with`` (no retry, no check)."""
        return session.request(
            self.method,
            self.url,
            data=self.data,
            headers=self.headers,
            timeout=self.timeout,
            proxy=self.proxy,
            ssl=self.ssl,
        )

    def attempts(self) -> Attempts:
        """A fresh retry state for one send of this call."""
        return Attempts(self.method, self.path, self.submits_job, self.max_retries, where=self.where)


class ScenarioAsyncHook(ScenarioHookIdentity, BaseHook):
    """Async twin of :class:`~airflow_kling.hooks.scenario.ScenarioHook` for triggers.

    The same connection, credentials, retry rules and errors; the connection is looked up with
    ``BaseHook.aget_connection`` (a sync lookup inside the triggerer's loop fails spuriously) and read
    once per hook.

    :param scenario_conn_id: the Airflow connection id; default ``scenario_default``.
    :param project_id: the project to act in, overriding the connection's ``project_id``; default none.
    """

    hook_name = "Scenario (async)"

    def __init__(self, scenario_conn_id: str = DEFAULT_CONN_ID, *, project_id: str | None = None) -> None:
        super().__init__()
        self.scenario_conn_id = scenario_conn_id
        self.project_id = project_id
        self._config: ScenarioConnectionConfig | None = None
        self._job_call: tuple[str, PreparedCall] | None = None

    async def config(self) -> ScenarioConnectionConfig:
        """The connection.

        Read once per hook, and shared by every hook of the process for :data:`CONNECTION_CACHE_SECONDS`
        (thousands of triggers do not each ask the triggerer for it).
        """
        if self._config is None:
            self._config = await _cached_config(self.scenario_conn_id, self.project_id, self._read_config)
        return self._config

    async def _read_config(self) -> ScenarioConnectionConfig:
        from airflow_kling.version_compat import AirflowNotFoundException

        try:
            conn = await self.aget_connection(self.scenario_conn_id)
        except AirflowNotFoundException:
            conn = None
        return self._config_of(conn)

    async def prepare(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> PreparedCall:
        """Build one API call, to be sent by :meth:`send` as often as wanted (a poll builds it once).

        The arguments are :meth:`request`'s; the connection is the one this hook has read (:meth:`config`).
        """
        from yarl import URL

        cfg = await self.config()
        call = api_call(cfg, method, path, params, body)
        url = URL(call.url)  # what aiohttp makes of a text URL on each request, made once
        return PreparedCall(
            call.method,
            path,
            url.extend_query(call.params) if call.params else url,
            call.data,
            call.headers,
            call.submits_job,
            cfg.max_retries,
            cfg.where(),
            _client_timeout(cfg.timeout),
            cfg.api_proxy,  # every call of this hook goes to the API's own URL
            cfg.ssl_context,
            cfg.conn_id,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> tuple[int, dict[str, Any]]:
        """Send one API call; see :meth:`ScenarioHook.request` for the arguments and retry rules."""
        return await self.send(await self.prepare(method, path, params=params, body=body))

    async def send(self, call: PreparedCall) -> tuple[int, dict[str, Any]]:
        """Send a call built by :meth:`prepare`, with :meth:`request`'s retry rules; its status and JSON object.

        :raises ScenarioAPIError: an error answer, or a success that is not a JSON object.
        :raises ScenarioTransportError: no answer came, after the retries.
        """
        import aiohttp

        method, path = call.method, call.path
        session = shared_session()
        attempts: Attempts | None = None  # a success, most answers, needs no retry state
        while True:
            try:
                async with call.open(session) as response:
                    status = response.status
                    answer = AnswerBody(status, method, path, response.headers.get("Content-Length"))
                    if answer.fits:
                        answer.add(await response.read())
                    else:
                        async for chunk in response.content.iter_chunked(READ_CHUNK):
                            if not answer.add(chunk):
                                break
                    content = answer.content()
                    response_headers = response.headers
            except (aiohttp.ClientError, TimeoutError) as exc:
                if attempts is None:
                    attempts = call.attempts()
                sent = not isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
                refused = certificate_problem(exc) if isinstance(exc, aiohttp.ClientSSLError) else None
                step = attempts.failed(type(exc).__name__, request_sent=sent, certificate=refused)
            else:
                if 200 <= status < 300:
                    return status, decode_json(content, method, path, status)
                if attempts is None:
                    attempts = call.attempts()
                step = attempts.answered(status, response_headers)
                if step.final:
                    raise api_error(status, method, path, content, call.conn_id)
            if step.error is not None:
                raise step.error
            self.log.warning("%s in %.2f s", step.reason, step.delay)
            await asyncio.sleep(step.delay)

    async def get_object(self, call: ObjectCall, *ids: str) -> dict[str, Any]:
        """Send ``call`` for ``ids``; its answer's object (see :meth:`ScenarioHook.get_object`)."""
        _, payload = await self.request(call.method, call.path(*ids), body=call.body)
        return call.answer(payload)

    async def get_job(self, job_id: str) -> dict[str, Any]:
        """The job object of ``GET /jobs/{jobId}``, its types checked (:func:`~airflow_kling.jobs.status.checked_job`).

        The request is built once for the job last asked for: a trigger polls one job with one hook.
        """
        last = self._job_call
        if last is None or last[0] != job_id:
            last = self._job_call = (job_id, await self.prepare(GET_JOB.method, GET_JOB.path(job_id)))
        _, payload = await self.send(last[1])
        return checked_job(GET_JOB.answer(payload))

    async def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Ask the API to cancel a job; returns the job object. The API may refuse (an error is raised)."""
        return checked_job(await self.get_object(CANCEL_JOB, job_id))

    async def recent_jobs(self, page_size: int = 100) -> list[dict[str, Any]]:
        """The first page of ``GET /jobs``.

        The project's newest jobs first, at most ``page_size`` (1-100, default 100); one request, no paging
        (an empty page is an answer here, not a reason to page on).

        :raises ScenarioResponseError: a job of another shape (:func:`~airflow_kling.jobs.status.checked_job`).
        """
        _, payload = await self.request("GET", "/jobs", params={"page_size": page_size})
        jobs = payload.get("jobs") or []
        return [checked_job(job) for job in (jobs if isinstance(jobs, list) else [None])[:page_size]]

    async def get_asset(self, asset_id: str) -> dict[str, Any]:
        """The asset object of ``GET /assets/{assetId}``."""
        return await self.get_object(GET_ASSET, asset_id)
