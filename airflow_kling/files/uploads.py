"""The ``POST /uploads`` flow: announce a file, PUT its parts to presigned URLs, complete, wait.

Parts are read from the source as they are sent, so memory use does not grow with the file size.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, Protocol, runtime_checkable

from airflow_kling.api.contract import COMPLETE_UPLOAD, CREATE_UPLOAD, GET_UPLOAD, MESSAGE_LIMIT
from airflow_kling.api.ids import checked_id
from airflow_kling.exceptions import ScenarioAPIError, ScenarioResponseError, ScenarioUploadError
from airflow_kling.media.formats import content_type_for, kind_for

if TYPE_CHECKING:
    from airflow_kling.files.client import TransferClient

PART_SIZE = 64 * 1024 * 1024
"""Bytes per part at most; more parts only for larger files (S3 wants 5 MiB or more for all but the last)."""
READ_BLOCK = 1024 * 1024
UPLOAD_READY = frozenset({"validated", "imported", "complete"})
UPLOAD_WAIT_SECONDS = 600.0
"""How long to wait for the API to validate a completed upload."""
MAX_UPLOAD_ID = 200
"""Characters an upload's id may have (the contract gives it no shape; it is percent-encoded in paths)."""


@runtime_checkable
class ObjectStorageLike(Protocol):
    """What the upload needs of an ``airflow.sdk.ObjectStoragePath``."""

    @property
    def name(self) -> str:
        """The file's name."""

    def open(self, mode: str = ...) -> Any:
        """Open the file."""

    def stat(self) -> Any:
        """The file's stat (its size read from it)."""


UploadSource = str | os.PathLike[str] | ObjectStorageLike | IO[bytes]


@contextmanager
def open_source(source: UploadSource) -> Iterator[tuple[IO[bytes], str, int]]:
    """Open an upload source as (seekable binary stream, file name, size in bytes)."""
    if hasattr(source, "protocol") and isinstance(source, ObjectStorageLike):
        # An ObjectStoragePath (checked first: on Airflow 3.1 it is also os.PathLike, as its URI).
        size = int(_stat_size(source.stat()))
        with source.open("rb") as remote:
            yield remote, source.name, size
    elif isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise ScenarioUploadError(f"Upload source {path!r} is not a file")
        with open(path, "rb") as local:
            yield local, os.path.basename(path), os.fstat(local.fileno()).st_size
    else:
        stream: IO[bytes] = source  # type: ignore[assignment]
        if not stream.seekable():
            raise ScenarioUploadError("Upload source must be seekable: its size is announced before sending")
        start = stream.tell()
        size = stream.seek(0, os.SEEK_END) - start
        stream.seek(start)
        yield stream, os.path.basename(str(getattr(stream, "name", "upload.bin"))), size


def _stat_size(stat: Any) -> int:
    return int(stat["size"] if isinstance(stat, dict) else stat.st_size)


class PartReader:
    """A file-like view of ``length`` bytes from ``offset``; ``len()`` gives requests a Content-Length."""

    def __init__(self, stream: IO[bytes], offset: int, length: int) -> None:
        self._stream = stream
        self._offset = offset
        self._left = length
        self._length = length
        stream.seek(offset)

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left when negative) of the part."""
        if self._left <= 0:
            return b""
        size = self._left if size < 0 else min(size, self._left, READ_BLOCK)
        chunk = self._stream.read(size)
        self._left -= len(chunk)
        return chunk


def upload_asset(
    hook: TransferClient,
    source: UploadSource,
    *,
    kind: str | None,
    file_name: str | None,
    content_type: str | None,
) -> str:
    """See :meth:`airflow_kling.hooks.scenario.ScenarioHook.upload_asset`."""
    with open_source(source) as (stream, source_name, size):
        file_name = file_name or source_name
        kind = kind or kind_for(file_name)
        if kind is None:
            raise ScenarioUploadError(
                f"Cannot tell the asset kind of {file_name!r} from its extension; pass kind='video'|'audio'|..."
            )
        if size <= 0:
            raise ScenarioUploadError(f"Upload source {file_name!r} is empty (0 bytes)")
        parts = max(1, math.ceil(size / PART_SIZE))
        _, created = hook.request(
            CREATE_UPLOAD.method,
            CREATE_UPLOAD.path(),
            body={
                "kind": kind,
                "fileName": file_name,
                "contentType": content_type or content_type_for(file_name),
                "fileSize": size,
                "parts": parts,
            },
        )
        upload = CREATE_UPLOAD.answer(created)
        upload_id = upload.get("id")
        if not isinstance(upload_id, str) or not 0 < len(upload_id) <= MAX_UPLOAD_ID:  # put in paths, encoded
            raise ScenarioResponseError(
                f"Scenario POST /uploads answered an upload.id that is not a text of 1 to {MAX_UPLOAD_ID} characters"
            )
        part_length = math.ceil(size / parts)
        for number, url in part_urls(upload.get("parts"), parts):
            offset = (number - 1) * part_length
            _put_part(hook, url, stream, number, offset, min(part_length, size - offset))
        hook.log.info("Uploaded %s (%d bytes, %d part(s)) as upload %s", file_name, size, parts, upload_id)
        _complete(hook, upload_id)
        return _wait_for_asset(hook, upload_id, file_name)


def part_urls(listed: Any, parts: int) -> list[tuple[int, str]]:
    """The presigned URL of each part an upload announced, by number: ``upload.parts`` of ``POST /uploads``.

    :param parts: the parts announced; the answer must list each of 1 to ``parts`` once, with its URL.
    :raises ScenarioResponseError: naming ``upload.parts`` and what is wrong in it (never a URL: they are
        signed), before any part is sent.
    """
    if not isinstance(listed, list) or len(listed) != parts:
        found = f"{len(listed)} item(s)" if isinstance(listed, list) else type(listed).__name__
        raise ScenarioResponseError(
            f"Scenario POST /uploads answered upload.parts with {found} for the {parts} part(s) announced: "
            "nothing was sent"
        )
    urls: dict[int, str] = {}
    for part in listed:
        number = part.get("number") if isinstance(part, dict) else None
        url = part.get("url") if isinstance(part, dict) else None
        if type(number) is not int or not 1 <= number <= parts or number in urls or not isinstance(url, str):
            raise ScenarioResponseError(
                f"Scenario POST /uploads answered an upload.parts item that is not a part numbered 1 to {parts}, "
                f"each once, with a url (number {repr(number)[:20]}): nothing was sent"
            )
        urls[number] = url
    return sorted(urls.items())


def _complete(hook: TransferClient, upload_id: str) -> None:
    """Ask Scenario to assemble the parts.

    A retried ``complete`` whose first attempt took effect (its answer was lost on the way back) is refused as
    "already" done: the upload's own state says so.
    """
    try:
        hook.request(COMPLETE_UPLOAD.method, COMPLETE_UPLOAD.path(upload_id), body=COMPLETE_UPLOAD.body)
    except ScenarioAPIError as error:
        if error.status != 400:
            raise
        if hook.get_object(GET_UPLOAD, upload_id).get("status") in (None, "pending"):
            raise
        hook.log.info("Upload %s was completed by an earlier attempt whose answer was lost", upload_id)


def _put_part(
    hook: TransferClient, url: str, stream: IO[bytes], number: int, offset: int, length: int
) -> None:
    label = f"upload part {number}"
    response = hook.send(
        "PUT", url, label=label, make_kwargs=lambda: {"data": PartReader(stream, offset, length)}
    )
    if not 200 <= response.status_code < 300:
        code = storage_error_code(response.content)
        raise ScenarioUploadError(
            f"Storage refused {label} with HTTP {response.status_code}" + (f" ({code})" if code else "")
        )


STORAGE_CODE = re.compile(
    r"<Code>([A-Za-z][A-Za-z0-9.]{0,63})</Code>|\"[Cc]ode\"\s*:\s*\"([A-Za-z][A-Za-z0-9.]{0,63})\""
)
"""A storage host's error code (S3's ``<Code>``, a JSON ``"code"``): all of its error body that is kept."""


def storage_error_code(body: bytes) -> str | None:
    """The error code a storage host's answer names (``SignatureDoesNotMatch``), and nothing else of it.

    The rest of such a body may hold the string that was signed and the access key id.
    """
    found = STORAGE_CODE.search(body[:4096].decode("utf-8", "replace"))
    return next((group for group in found.groups() if group), None) if found else None


def _wait_for_asset(hook: TransferClient, upload_id: str, file_name: str) -> str:
    deadline = time.monotonic() + UPLOAD_WAIT_SECONDS
    delay = 0.2
    while True:
        upload = hook.get_object(GET_UPLOAD, upload_id)
        status = upload.get("status")
        if isinstance(status, str) and status in UPLOAD_READY and upload.get("entityId"):
            return checked_id(upload["entityId"], "upload.entityId")
        if status == "failed":
            reason = upload.get("errorMessage")
            raise ScenarioUploadError(
                f"Scenario refused the upload of {file_name!r}: "
                f"{reason[:MESSAGE_LIMIT] if isinstance(reason, str) and reason else 'no reason given'}"
            )
        if time.monotonic() > deadline:
            raise ScenarioUploadError(
                f"Upload {upload_id} of {file_name!r} still {str(status)[:40]!r} after {UPLOAD_WAIT_SECONDS:.0f} s"
            )
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
