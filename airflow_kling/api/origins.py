"""Where a URL that an API answer names (a signed file URL, a presigned upload part) may be fetched from.

The API's own origin; a host that ``[kling] storage_hosts`` allows; or, over https, a host whose every address
is public. Never a loopback, private, link-local or reserved address otherwise, checked on the addresses the
name resolves to: a broken or hostile API cannot make the workers or the api-server read internal services.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import urlsplit

from airflow_kling.exceptions import ScenarioResponseError

SETTING = ("kling", "storage_hosts")
"""``[kling] storage_hosts`` (``AIRFLOW__KLING__STORAGE_HOSTS``): comma-separated hosts (``host`` or
``host:port``, ``*.example.com`` for its subdomains) whose URLs are fetched whatever their scheme and address."""
Resolver = Callable[..., list[tuple[Any, ...]]]


def allowed_hosts_setting() -> tuple[str, ...]:
    """The hosts of ``[kling] storage_hosts``, lower case; empty when not set."""
    from airflow_kling.version_compat import conf

    value = str(conf.get(*SETTING, fallback="") or "")
    return tuple(item.strip().lower() for item in value.split(",") if item.strip())


def checked_storage_url(
    url: str,
    api_base_url: str,
    allowed_hosts: Collection[str] = (),
    resolve: Resolver = socket.getaddrinfo,
) -> str:
    """``url`` when it may be fetched (see the module's description).

    :raises ScenarioResponseError: naming the scheme and host (never the path or query, which are signed)
        and what to set to allow it; nothing was sent to it.
    """
    parts, api = urlsplit(url), urlsplit(api_base_url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if not host or parts.scheme not in ("http", "https"):
        raise ScenarioResponseError("The API named a file URL that is not an http(s) address: not fetched")
    if (parts.scheme, host, port) == (api.scheme, (api.hostname or "").lower(), api.port):
        return url  # the API's own origin (the emulator serves its files itself)
    if _allowed(host, port, allowed_hosts):
        return url
    where = f"{parts.scheme}://{host}{f':{port}' if port else ''}"
    if parts.scheme != "https":
        raise ScenarioResponseError(
            f"The API named a file at {where}: only https is fetched from a host other than the API's own "
            "(allow the host in [kling] storage_hosts)"
        )
    try:
        addresses = {info[4][0] for info in resolve(host, port or 443, proto=socket.IPPROTO_TCP)}
    except OSError as error:
        raise ScenarioResponseError(
            f"The API named a file at {where}, whose name does not resolve: {error}"
        ) from None
    for address in sorted(addresses):
        if not ipaddress.ip_address(str(address).split("%", 1)[0]).is_global:
            raise ScenarioResponseError(
                f"The API named a file at {where}, which resolves to {address}, not a public address: not "
                "fetched (allow the host in [kling] storage_hosts if it is yours)"
            )
    return url


def _allowed(host: str, port: int | None, allowed: Collection[str]) -> bool:
    for item in allowed:
        name, _, wanted_port = item.partition(":") if not item.startswith("[") else (item, "", "")
        if wanted_port and str(port) != wanted_port:
            continue
        if name == host or (name.startswith("*.") and host.endswith(name[1:])):
            return True
    return False
