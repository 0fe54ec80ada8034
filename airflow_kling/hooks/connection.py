"""Turn an Airflow connection of type ``scenario`` into what a request needs.

Shared by the sync and the async hook so that both read a connection the same way: the same base URL,
the same credential fallback and the same limits.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_kling.exceptions import ScenarioConfigError, ScenarioCredentialsError

if TYPE_CHECKING:
    from airflow.sdk import Connection

DEFAULT_CONN_ID = "scenario_default"
"""The Airflow connection the hooks, operators, sensor and trigger use unless told another."""
DEFAULT_BASE_URL = "https://api.cloud.scenario.com/v1"
DEFAULT_TIMEOUT = 60.0
"""Seconds to wait for an answer (read, write); connecting has its own, shorter bound."""
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_MAX_RETRIES = 4
"""Retries after the first attempt: with the backoff of :mod:`.retry` about 7 s in all."""
API_KEY_ENV = "SCENARIO_SDK_API_KEY"
API_SECRET_ENV = "SCENARIO_SDK_API_SECRET"
BASE_URL_ENV = "SCENARIO_BASE_URL"
DEFAULT_WEB_URL = "https://app.scenario.com"


def environment_proxy(url: str) -> str | None:
    """The proxy the standard proxy variables name for ``url``, if any.

    ``HTTP_PROXY``, ``HTTPS_PROXY`` and ``ALL_PROXY`` by the URL's scheme, unless ``NO_PROXY`` covers its host
    (hosts, domains and networks): the rules ``requests`` follows for the sync hook, each variable also read
    in lower case.
    """
    from requests.utils import get_environ_proxies

    parts = urlsplit(url)
    proxies = get_environ_proxies(f"{parts.scheme}://{parts.netloc}/")
    return proxies.get(parts.scheme) or proxies.get("all")


@dataclass(frozen=True)
class ScenarioConnectionConfig:
    """Everything a request to the Scenario API needs, read from one connection.

    :param conn_id: the Airflow connection id it came from (named in auth errors).
    :param base_url: full base URL including ``/v1``, without a trailing slash.
    :param project_id: sent as ``projectId`` where the API takes it; ``None`` for the key's default.
    :param timeout: seconds an answer may keep a hook waiting: between two reads of it (the sync hook), for
        the whole request (the async hook); default 60.
    :param max_retries: retries after the first attempt for retryable failures; default 4.
    :param web_url: base of Scenario's web app, for links to jobs; default ``https://app.scenario.com``.
    :param proxies: proxy URL by scheme of the request (``http``, ``https``, ``all``), for every request of
        both hooks (API calls and file URLs); default none (the standard proxy variables apply).
    :param verify: ``True`` (default) to check TLS certificates against the system's CAs, ``False`` not to,
        or the path of a CA bundle (a PEM file or a directory of them) to check them against instead.
    :param cert: a client certificate for TLS: the path of a PEM file holding certificate and key, or the
        paths of both; default none.
    """

    conn_id: str
    base_url: str
    api_key: str
    api_secret: str = field(repr=False)
    project_id: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    web_url: str = DEFAULT_WEB_URL
    proxies: Mapping[str, str] = field(default_factory=dict, repr=False)
    verify: bool | str = True
    cert: str | tuple[str, str] | None = None

    @cached_property
    def authorization(self) -> str:
        """The ``Authorization`` header value. Never log it."""
        from airflow.sdk.log import mask_secret

        token = base64.b64encode(f"{self.api_key}:{self.api_secret}".encode()).decode("ascii")
        mask_secret(token)  # the header's credential, redacted by Airflow's masker wherever it is logged
        return f"Basic {token}"

    def job_web_url(self, job_id: str) -> str:
        """The job's page in Scenario's web app (the path is inferred; the API documents none)."""
        return f"{self.web_url}/jobs/{job_id}"

    def where(self, url: str | None = None) -> str:
        """``host[:port] (Airflow connection 'id')`` of ``url`` (default the API's).

        What errors name when no answer came (never a path or a query string, which may be signed).
        """
        return self._api_where if url is None or url.startswith(f"{self.base_url}/") else self._where(url)

    @cached_property
    def _api_where(self) -> str:
        """:meth:`where` of the API, worked out once (every poll of a triggerer asks for it)."""
        return self._where(self.base_url)

    def _where(self, url: str) -> str:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
        return f"{host}{port} (Airflow connection {self.conn_id!r})"

    def proxy_for(self, url: str) -> str | None:
        """The connection's proxy for ``url`` (by its scheme, else ``all``); ``None``: the environment's."""
        return self.proxies.get(urlsplit(url).scheme) or self.proxies.get("all")

    def requests_options(self) -> dict[str, Any]:
        """``proxies``, ``verify`` and ``cert`` for each ``requests`` call.

        Given with every request, so that the connection wins over ``REQUESTS_CA_BUNDLE`` and the proxy
        variables, which ``requests`` would otherwise prefer to a session's own settings.
        """
        options: dict[str, Any] = {"verify": self.verify}
        if self.proxies:
            options["proxies"] = dict(self.proxies)
        if self.cert is not None:
            options["cert"] = self.cert
        return options

    @cached_property
    def api_proxy(self) -> str | None:
        """The proxy of the API's calls through ``aiohttp``, worked out once per connection read.

        The connection's (``proxies`` extra), else what the proxy variables say for :attr:`base_url`
        (:func:`environment_proxy`), read with the connection.
        """
        named = self.proxy_for(self.base_url)
        return named if named is not None else environment_proxy(self.base_url)

    @cached_property
    def ssl_context(self) -> ssl.SSLContext | bool:
        """What ``aiohttp`` takes as ``ssl=``.

        ``True`` for the system's CAs and no client certificate, ``False`` not to verify, else a context with
        the connection's CA bundle and client certificate.
        """
        if self.verify is True and self.cert is None:
            return True
        if self.verify is False and self.cert is None:
            return False
        if isinstance(self.verify, str):
            is_file = os.path.isfile(self.verify)
            context = ssl.create_default_context(
                cafile=self.verify if is_file else None, capath=None if is_file else self.verify
            )
        else:
            context = ssl.create_default_context()
            if self.verify is False:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        if self.cert is not None:
            certfile, keyfile = (self.cert, None) if isinstance(self.cert, str) else self.cert
            context.load_cert_chain(certfile, keyfile)
        return context

    def url(self, path: str) -> str:
        """The absolute URL of an API path such as ``/jobs/job_x``."""
        return f"{self.base_url}/{path.lstrip('/')}"

    @classmethod
    def from_connection(
        cls, conn: Connection | None, conn_id: str, *, project_id: str | None = None
    ) -> ScenarioConnectionConfig:
        """Read a connection; ``conn=None`` (no such connection) uses the environment variables alone.

        :param project_id: overrides the connection's ``project_id`` extra when given.

        :raises ScenarioCredentialsError: neither the connection nor the environment has a key and secret.
        :raises ScenarioConfigError: a field has a value that cannot be used.
        """
        extra: dict[str, Any] = dict(conn.extra_dejson) if conn is not None else {}
        api_key = (conn.login if conn is not None else None) or os.environ.get(API_KEY_ENV)
        api_secret = (conn.password if conn is not None else None) or os.environ.get(API_SECRET_ENV)
        if not api_key or not api_secret:
            where = (
                f"the Airflow connection {conn_id!r}"
                if conn is not None
                else (f"the Airflow connection {conn_id!r} (not defined)")
            )
            raise ScenarioCredentialsError(
                f"No Scenario API key and secret found in {where}. Set the connection's login (API key) and "
                f"password (API secret), e.g. through AIRFLOW_CONN_{conn_id.upper()}, or the environment "
                f"variables {API_KEY_ENV} and {API_SECRET_ENV}."
            )
        if conn is None or not conn.password:
            # A connection's password is registered with Airflow's secrets masker; the fallback is not.
            from airflow.sdk.log import mask_secret

            mask_secret(api_secret, API_SECRET_ENV)
        base_url = _base_url(conn)
        return cls(
            conn_id=conn_id,
            base_url=base_url,
            api_key=api_key,
            api_secret=api_secret,
            project_id=project_id or _optional_str(extra.get("project_id")),
            timeout=_positive_float(extra.get("timeout"), DEFAULT_TIMEOUT, "timeout", conn_id),
            max_retries=_retries(extra.get("max_retries"), conn_id),
            web_url=(_optional_str(extra.get("web_url")) or _default_web_url(base_url)).rstrip("/"),
            proxies=_proxies(extra, conn_id),
            verify=_verify(extra.get("verify", extra.get("verify_ssl")), conn_id),
            cert=_cert(extra.get("cert"), conn_id),
        )


def _base_url(conn: Connection | None) -> str:
    """The API's base URL from a connection, one rule for every form.

    A JSON connection's ``host`` with or without a scheme, or a URI's host, port and schema: the scheme given,
    else ``http`` for a loopback host and ``https`` for any other; the port given in the host or as the port
    field; the path given in the host, else the schema field, else ``v1``. No host: ``SCENARIO_BASE_URL``,
    else Scenario's.
    """
    host = (conn.host or "").strip() if conn is not None else ""
    if not host:
        return os.environ.get(BASE_URL_ENV, DEFAULT_BASE_URL).rstrip("/")
    scheme, _, rest = host.rpartition("://")
    netloc, _, path = rest.partition("/")
    parts = urlsplit(f"//{netloc}")
    if conn is not None and conn.port and parts.port is None:
        netloc = f"{netloc}:{conn.port}"
    scheme = scheme or ("http" if _is_loopback(parts.hostname or "") else "https")
    path = path.strip("/") or (conn.schema or "").strip("/") if conn is not None else path.strip("/")
    return f"{scheme}://{netloc}/{path or 'v1'}"


def _default_web_url(base_url: str) -> str:
    """Scenario's web app for Scenario's API.

    For any other host (the emulator, a gateway), that host's own origin, whose ``/jobs/{jobId}`` the emulator
    answers with a page: a job link never leaves for a web app that does not know the job.
    """
    parts = urlsplit(base_url)
    if (parts.hostname or "").endswith(".scenario.com"):
        return DEFAULT_WEB_URL
    return f"{parts.scheme}://{parts.netloc}"


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False


def _optional_str(value: Any) -> str | None:
    return str(value).strip() or None if value not in (None, "") else None


def _positive_float(value: Any, default: float, name: str, conn_id: str) -> float:
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if number <= 0:
        raise ScenarioConfigError(
            f"Connection {conn_id!r}: extra field {name!r} must be a positive number of seconds, got {value!r}"
        )
    return number


PROXY_SCHEMES = ("http", "https", "all")
"""The keys of the ``proxies`` extra: the scheme of the request a proxy carries (``all``: any)."""


def _proxies(extra: Mapping[str, Any], conn_id: str) -> dict[str, str]:
    """The ``proxies`` (or ``proxy``) extra.

    One proxy URL for every request, or an object of them by scheme. Errors name the field, never its value (a
    proxy URL may hold a password, which is masked).
    """
    value = extra.get("proxies", extra.get("proxy"))
    if value in (None, "", {}):
        return {}
    if isinstance(value, str):
        value = {"all": value}
    problem = f"Connection {conn_id!r}: extra field 'proxies' must be"
    if not isinstance(value, Mapping) or not set(value) <= set(PROXY_SCHEMES):
        raise ScenarioConfigError(
            f"{problem} a proxy URL, or an object of proxy URLs by the scheme of the request "
            f"({', '.join(PROXY_SCHEMES)})"
        )
    proxies: dict[str, str] = {}
    for scheme, url in value.items():
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ScenarioConfigError(
                f"{problem} http:// or https:// URLs with a host, such as http://proxy.example.com:3128 "
                f"(the one for {scheme!r} is not)"
            )
        if parts.password:
            from airflow.sdk.log import mask_secret

            mask_secret(parts.password)
        proxies[scheme] = url
    return proxies


def _verify(value: Any, conn_id: str) -> bool | str:
    """The ``verify`` extra: a boolean (or ``"true"`` / ``"false"``), or the path of a CA bundle that exists."""
    if value is None or value == "" or isinstance(value, bool):
        return value is not False
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, str) or not os.path.exists(value):
        raise ScenarioConfigError(
            f"Connection {conn_id!r}: extra field 'verify' must be true, false or the path of a CA bundle "
            f"(a PEM file or a directory of them) that exists on this machine, got {value!r}"
        )
    return value


def _cert(value: Any, conn_id: str) -> str | tuple[str, str] | None:
    """The ``cert`` extra: the path of a PEM file with certificate and key, or a list of the two paths."""
    if value in (None, ""):
        return None
    paths = [value] if isinstance(value, str) else value
    if (
        not isinstance(paths, list | tuple)
        or len(paths) not in (1, 2)
        or not all(isinstance(path, str) and os.path.isfile(path) for path in paths)
    ):
        raise ScenarioConfigError(
            f"Connection {conn_id!r}: extra field 'cert' must be the path of a PEM file holding a client "
            f"certificate and its key, or a list of the certificate's path and the key's, each a file that "
            f"exists on this machine, got {value!r}"
        )
    return paths[0] if len(paths) == 1 else (paths[0], paths[1])


def _retries(value: Any, conn_id: str) -> int:
    if value in (None, ""):
        return DEFAULT_MAX_RETRIES
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if not 0 <= number <= 20:
        raise ScenarioConfigError(
            f"Connection {conn_id!r}: extra field 'max_retries' must be a whole number from 0 to 20, got {value!r}"
        )
    return number


class ScenarioHookIdentity:
    """How both hooks read their ``scenario`` connection, found by ``scenario_conn_id``."""

    conn_name_attr = "scenario_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "scenario"
    scenario_conn_id: str
    project_id: str | None

    def _config_of(self, conn: Connection | None) -> ScenarioConnectionConfig:
        """The config of ``conn``, acting in ``project_id`` when one was given.

        ``conn`` is ``None`` when there is no such connection: the environment's credentials are used.
        """
        return ScenarioConnectionConfig.from_connection(
            conn, self.scenario_conn_id, project_id=self.project_id
        )
