"""After a person's review.

The verdict written into the clip's manifest, and an approved clip copied, verified, to where its consumers
read it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from airflow_kling.api.ids import checked_id
from airflow_kling.exceptions import ScenarioError, ScenarioResponseError, ScenarioValidationError
from airflow_kling.files.archive import (
    MANIFEST_NAME,
    MANIFEST_READ_LIMIT,
    existing_checksum,
    manifest_uri,
    read_manifest,
    recorded_sources,
)
from airflow_kling.files.locations import UntrustedValue, roots, under_roots
from airflow_kling.files.storage import COPY_BLOCK, atomic_writer, io_path, plain_uri, storage_path
from airflow_kling.media.formats import ARCHIVED_TYPES, extension_for

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from airflow_kling.jobs.xcoms import ArchivedFileRecord

FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
"""An archived file's own name: no slash, no leading dot (so never ``..``)."""
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def checked_files(
    files: list[ArchivedFileRecord], destination: str, argument: str
) -> list[ArchivedFileRecord]:
    """The archive's records, once checked against what this DAG archived; an XCom is a claim.

    Every file, and its manifest beside it, must lie under ``destination`` (the location this DAG archives
    to), with ids of Scenario's shape, a plain file name, a whole number of bytes, a SHA-256 of 64 hex
    characters and a media type the archive writes.

    :param argument: the argument that named ``destination``, for the error.
    :raises ScenarioValidationError: naming the value refused, before anything is read or written.
    """
    try:
        allowed = roots(destination, argument)
    except ValueError as error:
        raise ScenarioValidationError(
            f"{argument}={destination!r} is not a storage location: {error}"
        ) from None
    for record in files:
        try:
            for uri in (record["uri"], record["manifest_uri"]):
                under_roots(uri, allowed)
            checked_id(record["job_id"], "job id")
            checked_id(record["asset_id"], "asset id")
            name = record["uri"].rsplit("/", 1)[-1]
            if not FILE_NAME.match(name):
                raise UntrustedValue(f"the file name {name[:80]!r} is not a plain name")
            if record["manifest_uri"] != manifest_uri(record["uri"]):
                raise UntrustedValue("a manifest must be the manifest.json beside its file")
            size, sha256, mime_type = record["size"], record["sha256"], record["mime_type"]
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise UntrustedValue(f"size must be a whole number of bytes, got a {type(size).__name__}")
            if not isinstance(sha256, str) or not SHA256.match(sha256):
                raise UntrustedValue("sha256 must be 64 hexadecimal characters")
            if not isinstance(mime_type, str) or extension_for(mime_type) is None:
                raise UntrustedValue(
                    f"mime_type must be one the archive writes ({', '.join(ARCHIVED_TYPES)})"
                )
        except (UntrustedValue, ScenarioResponseError, KeyError, AttributeError, TypeError) as error:
            raise ScenarioValidationError(
                f"The archive's record names a file this review does not trust ({error}); {argument}="
                f"{destination!r}; nothing was read or written"
            ) from None
    return files


def reviewable_manifests(
    files: list[ArchivedFileRecord], storage_conn_id: str | None = None
) -> dict[str, dict[str, Any]]:
    """The manifest of each archived file, by its URI, read once before a reviewer is asked.

    A verdict goes into each of them (:func:`record_review`): a manifest that could not take it is refused here,
    before anyone watches the clip.

    :raises ScenarioValidationError: a manifest that is missing, or is not a JSON object of at most
        :data:`~airflow_kling.files.archive.MANIFEST_READ_LIMIT` bytes, naming its job.
    :raises OSError: the storage failed to read one (a later try may read it).
    """
    manifests: dict[str, dict[str, Any]] = {}
    for record in files:
        uri = record["manifest_uri"]
        if uri not in manifests:
            manifests[uri] = _manifest_taking_a_verdict(uri, record["job_id"], storage_conn_id)[1]
    return manifests


def source_names(manifest: dict[str, Any]) -> list[str]:
    """The file names a job's inputs were uploaded from, as its manifest records them (``sources``).

    Each checked as a plain file name (:func:`~airflow_kling.files.archive.recorded_sources`).
    """
    return [name for _, name in recorded_sources(manifest)]


RECORD_RETRY_DELAYS = (2.0, 4.0, 8.0)
"""Seconds before each new attempt at recording a verdict after the storage failed to read or write the manifest."""


def record_review(
    manifest_uri: str,
    job_id: str,
    review: dict[str, Any],
    storage_conn_id: str | None = None,
    *,
    log: Any = None,
    retry_delays: Sequence[float] = RECORD_RETRY_DELAYS,
    sleep: Callable[[float], object] = time.sleep,
) -> None:
    """Add ``review`` (decision, who, when, comment) to the manifest of job ``job_id``, written whole or not at all.

    A storage error reading or writing the manifest (an ``OSError``, or the storage library's own, such as
    botocore's ``EndpointConnectionError``) is tried again after each of ``retry_delays`` seconds (default
    :data:`RECORD_RETRY_DELAYS`: 2, 4 and 8), each failure logged to ``log`` (the task's logger; by default this
    module's) by its kind, never its location.

    :param sleep: waits the seconds it is given; tests inject one.
    :raises ScenarioValidationError: the manifest is missing, or is not a JSON object of at most
        :data:`~airflow_kling.files.archive.MANIFEST_READ_LIMIT` bytes (it is left as it is; not tried again).
    :raises Exception: the storage's error at the last attempt, when every attempt failed.
    """
    for delay in (*retry_delays, None):
        try:
            manifest, content = _manifest_taking_a_verdict(manifest_uri, job_id, storage_conn_id)
            content["review"] = review
            with atomic_writer(io_path(manifest)) as out:
                out.write(json.dumps(content, indent=2, sort_keys=True).encode())
            return
        except ScenarioError:
            raise  # this package's own refusal: the manifest cannot take a verdict, and will not by waiting
        except Exception as error:  # every other one comes from the storage, whose libraries raise their own
            if delay is None:
                raise
            (log or logging.getLogger(__name__)).warning(
                "Recording the verdict on job %s failed (%s); trying again in %g s",
                job_id,
                _storage_error_kind(error),
                delay,
            )
        sleep(delay)


def _storage_error_kind(error: Exception) -> str:
    """An error's class, and an ``OSError``'s ``strerror`` (``PermissionError: Operation not permitted``).

    Never its message, which may name the object's location (botocore's names the URL).
    """
    kind = type(error).__name__
    strerror = error.strerror if isinstance(error, OSError) else None
    return f"{kind}: {strerror}" if isinstance(strerror, str) and strerror else kind


def _manifest_taking_a_verdict(
    manifest_uri: str, job_id: str, storage_conn_id: str | None
) -> tuple[ObjectStoragePath, dict[str, Any]]:
    """The manifest's location and content, or :class:`ScenarioValidationError` naming why no verdict fits it."""
    manifest = storage_path(manifest_uri, storage_conn_id)
    try:
        content = read_manifest(manifest)
    except FileNotFoundError:
        content, why = None, "is missing"
    else:
        why = f"is not a JSON object of at most {MANIFEST_READ_LIMIT / 2**20:g} MiB"
    if content is None:
        raise ScenarioValidationError(
            f"The manifest {MANIFEST_NAME} of job {job_id}'s clip {why}: no verdict can be recorded in it"
        )
    return manifest, content


def publish_copies(
    files: list[ArchivedFileRecord], publish_to: str, storage_conn_id: str | None = None
) -> list[str]:
    """Copy each archived file to ``publish_to/<job id>/<name>``; returns the published files' URIs.

    Each file's SHA-256 is checked against the archive's record on the way (a file that differs is not
    published), then each job's manifest is written beside them. A file already published with the same
    checksum is left as it is.

    :raises ScenarioValidationError: a file's bytes are not the ones archived.
    """
    target_root = storage_path(publish_to, storage_conn_id)
    published = []
    manifests: dict[str, str] = {}
    for record in files:
        folder = target_root / record["job_id"]
        target = folder / record["uri"].rsplit("/", 1)[-1]
        _copy_verified(storage_path(record["uri"], storage_conn_id), target, record["sha256"])
        manifests[record["job_id"]] = record["manifest_uri"]
        published.append(plain_uri(target))
    for job_id, manifest in manifests.items():
        source = storage_path(manifest, storage_conn_id)
        with atomic_writer(io_path(target_root / job_id / MANIFEST_NAME)) as out:
            out.write(source.read_bytes())
    return published


def _copy_verified(source: ObjectStoragePath, target: ObjectStoragePath, sha256: str) -> None:
    existing = existing_checksum(io_path(target))
    if existing is not None and existing[1] == sha256:
        return
    digest = hashlib.sha256()
    with io_path(source).open("rb") as reader, atomic_writer(io_path(target)) as out:
        while block := reader.read(COPY_BLOCK):
            digest.update(block)
            out.write(block)
        if digest.hexdigest() != sha256:
            raise ScenarioValidationError(
                f"{plain_uri(source)} is not the file that was archived (its SHA-256 differs from the "
                "archive's record): not published"
            )
