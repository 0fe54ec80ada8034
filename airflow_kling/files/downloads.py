"""Stream an asset's file from its signed URL.

Resumed when the connection drops, re-signed when the URL has expired, checked for size and SHA-256 while it
streams, never held whole in memory.
"""

from __future__ import annotations

import functools
import hashlib
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import requests

from airflow_kling.api.retry import backoff_delay
from airflow_kling.exceptions import ScenarioDownloadError, ScenarioError, ScenarioResponseError
from airflow_kling.files.storage import abandon

if TYPE_CHECKING:
    from airflow_kling.files.client import TransferClient

CHUNK = 256 * 1024
"""Bytes read at a time; what a dropped connection loses of a partial read, so kept small."""
WRITE_QUEUE = 64
"""Chunks at most read and not yet written: the memory a download holds, whatever the file's size."""
MAX_ATTEMPTS = 6
"""Attempts at one file in all (expired URLs, connections lost mid-body); each attempt's request is itself
retried on connection errors, 429 and 5xx by the hook."""
MAX_FILE_BYTES = 2 * 1024**3
"""Bytes a file whose asset declares no size may hold (2 GiB); a declared size is a bound of its own."""
EXPIRED_STATUSES = frozenset({401, 403, 404, 410})
"""What a file host answers for a signed URL that expired or was revoked: ask the API for a new one."""
CONTENT_RANGE = re.compile(r"bytes (\d{1,19})-\d{1,19}/(?:\d{1,19}|\*)")
"""A ``206`` answer's ``Content-Range`` header (``bytes 500-999/1000``): its first number is where the body starts."""


@dataclass(frozen=True)
class Downloaded:
    """A complete, verified file: its size in bytes and its SHA-256 (hex)."""

    size: int
    sha256: str


def download_asset(
    hook: TransferClient,
    asset: dict[str, Any],
    open_sink: Callable[[], IO[bytes]],
) -> tuple[Downloaded, IO[bytes]]:
    """Write an asset's bytes into a sink from ``open_sink``.

    A fresh sink is opened when a download must restart from zero (the host ignored a ``Range`` request, or
    answered with bytes from elsewhere in the file), the current one is appended to when it resumes.

    :param asset: the asset object of ``GET /assets/{id}`` (its ``url`` and ``properties.size`` are used).
    :return: the verified size and SHA-256, and the sink still open: the caller commits it (``close``) or
        abandons it (:func:`airflow_kling.files.storage.abandon`) once it has decided; a sink that failed is abandoned here.
    :raises ScenarioDownloadError: the file could not be fetched completely and verified.
    """
    asset_id = str(asset["id"])
    expected = _declared_size(asset_id, asset)
    most = expected if expected is not None else MAX_FILE_BYTES
    url = str(asset["url"])
    writer = _HashingWriter(open_sink())
    try:
        for attempt in range(MAX_ATTEMPTS):
            received = writer.size
            range_header = f"bytes={received}-" if received else None
            response, url = _signed_get(hook, asset_id, url, range_header, f"download of asset {asset_id}")
            with response:
                status = response.status_code
                if status in EXPIRED_STATUSES:  # refused even freshly signed: the next attempt signs again
                    continue
                if status not in (200, 206):
                    raise ScenarioDownloadError(f"Asset {asset_id}: the file host answered HTTP {status}")
                # A part from elsewhere in the file (a cache's stale part, a host's own choice) or from an unknown
                # place cannot be placed; a 200 to a resume is the whole file. Either way: start again from zero.
                misplaced = status == 206 and _range_start(response) != received
                if misplaced or (received and status == 200):
                    writer.stop()
                    abandon(writer.sink)
                    writer = _HashingWriter(open_sink())
                if misplaced:  # its body is of no use: the file is asked for again, whole
                    shown = str(response.headers.get("Content-Range"))[:40]
                    _pause(hook, asset_id, attempt, f"asked for bytes from {received}, sent {shown!r}")
                    continue
                lost: str | None = None
                try:
                    for chunk in response.iter_content(CHUNK):
                        if writer.size + len(chunk) > most:  # stopped before the excess is written
                            raise ScenarioDownloadError(
                                f"Asset {asset_id}: the file host sent more than "
                                f"{'its size, ' if expected is not None else 'the limit of '}{most} bytes"
                            )
                        writer.write(chunk)
                except requests.RequestException as error:
                    lost = type(error).__name__
            received = writer.size
            if lost is not None:
                _pause(hook, asset_id, attempt, f"connection lost after {received} bytes ({lost})")
                continue
            if expected is None or received == expected:
                writer.finish()
                return Downloaded(received, writer.digest.hexdigest()), writer.sink
            _pause(hook, asset_id, attempt, f"body ended after {received} of {expected} bytes")
        raise ScenarioDownloadError(
            f"Asset {asset_id}: not downloaded completely after {MAX_ATTEMPTS} attempts "
            f"({writer.size} of {expected} bytes)"
        )
    except BaseException:
        writer.stop()
        abandon(writer.sink)
        raise


def _declared_size(asset_id: str, asset: dict[str, Any]) -> int | None:
    """The asset's ``properties.size``: a whole number of bytes up to :data:`MAX_FILE_BYTES`, or none."""
    properties = asset.get("properties")
    size = properties.get("size") if isinstance(properties, dict) else None
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_FILE_BYTES:
        raise ScenarioResponseError(
            f"Asset {asset_id}: properties.size must be a whole number of bytes up to {MAX_FILE_BYTES}, "
            f"got {str(size)[:40]!r}"
        )
    return size


def _range_start(response: requests.Response) -> int | None:
    """Where a ``206`` answer's body starts in the file (its ``Content-Range``); ``None`` when it does not say."""
    header = response.headers.get("Content-Range")
    found = CONTENT_RANGE.fullmatch(header.strip()) if header else None
    return int(found.group(1)) if found else None


def open_asset_file(
    hook: TransferClient, asset: dict[str, Any], byte_range: str | None = None
) -> requests.Response:
    """An asset's file as a streamed response from its signed URL.

    HTTP 200, 206 for ``byte_range`` (a ``Range`` header's value, passed on) or 416 when that range is not in
    the file. An expired URL is re-signed once. The caller reads and closes the response; its URL is a
    credential and stays in it.

    :raises ScenarioDownloadError: the file host answered anything else.
    """
    asset_id = str(asset["id"])
    response, _ = _signed_get(hook, asset_id, str(asset["url"]), byte_range, f"file of asset {asset_id}")
    if response.status_code not in (200, 206, 416):
        response.close()
        raise ScenarioDownloadError(f"Asset {asset_id}: the file host answered HTTP {response.status_code}")
    return response


class _HashingWriter:
    """Writes chunks to a sink and hashes them in a thread of its own, in order.

    The caller meanwhile reads the next chunk from the network; both release the GIL, so on two cores the
    download runs near line rate.

    At most :data:`WRITE_QUEUE` chunks wait, so memory stays bounded whatever the file's size.
    """

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.digest = hashlib.sha256()
        self.size = 0
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=WRITE_QUEUE)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kling-archive-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            if self._error is None:
                try:
                    self.sink.write(chunk)
                    self.digest.update(chunk)
                except BaseException as error:  # raised again in the caller's thread
                    self._error = error

    def write(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._chunks.put(chunk)
        self.size += len(chunk)

    def stop(self) -> None:
        """Wait until every chunk handed over is written (or dropped after a write failed)."""
        if self._thread.is_alive():
            self._chunks.put(None)
            self._thread.join()

    def finish(self) -> None:
        """Wait until every chunk is written; raise what writing raised."""
        self.stop()
        if self._error is not None:
            raise self._error


def _signed_get(
    hook: TransferClient, asset_id: str, url: str, byte_range: str | None, label: str
) -> tuple[requests.Response, str]:
    """GET a signed URL as a stream, once more with a fresh URL when the host refuses it as expired.

    The response (the caller closes it) and the URL it came from. No Authorization header: a signed URL
    carries its own credentials. Connection errors, 429 and 5xx are retried by the hook's one retry path.
    """
    make_kwargs: Callable[[], dict[str, Any]] = functools.partial(
        dict, headers={"Range": byte_range} if byte_range else {}
    )
    response = hook.send("GET", url, label=label, make_kwargs=make_kwargs, stream=True)
    if response.status_code in EXPIRED_STATUSES:
        hook.log.info(
            "Signed URL of asset %s refused (HTTP %d): asking for a fresh one", asset_id, response.status_code
        )
        response.close()
        url = _fresh_url(hook, asset_id)
        response = hook.send("GET", url, label=label, make_kwargs=make_kwargs, stream=True)
    return response, url


def _fresh_url(hook: TransferClient, asset_id: str) -> str:
    try:
        return hook.get_download_url(asset_id)
    except ScenarioError as error:
        raise ScenarioDownloadError(f"Asset {asset_id}: no fresh download URL: {error}") from None


def _pause(hook: TransferClient, asset_id: str, attempt: int, what: str) -> None:
    if attempt + 1 >= MAX_ATTEMPTS:
        return
    delay = backoff_delay(attempt)
    hook.log.warning("Downloading asset %s: %s; attempt %d in %.2f s", asset_id, what, attempt + 2, delay)
    time.sleep(delay)
