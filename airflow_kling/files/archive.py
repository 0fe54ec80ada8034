"""Archive generated assets into the platform's own storage: complete, verified, findable, idempotent."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_kling.api.ids import checked_id, is_id, is_model_id
from airflow_kling.exceptions import (
    ScenarioDownloadError,
    ScenarioError,
    ScenarioResponseError,
)
from airflow_kling.files.downloads import download_asset
from airflow_kling.files.locations import template_parts
from airflow_kling.files.storage import (
    abandon,
    atomic_writer,
    io_path,
    is_local,
    local_path,
    partial_path,
    plain_uri,
    remove_stale_partials,
)
from airflow_kling.jobs.status import job_cost
from airflow_kling.jobs.xcoms import ArchivedFileRecord
from airflow_kling.media.formats import ARCHIVED_TYPES, extension_for

if TYPE_CHECKING:
    from pathlib import Path

    from airflow.sdk import ObjectStoragePath

    from airflow_kling.files.client import ArchiveClient

DEFAULT_FILE_NAME_TEMPLATE = "{job_id}/{asset_id}.{ext}"
MANIFEST_NAME = "manifest.json"
NO_JOB = "no-job"
"""The folder of an asset that names no parent job."""


@dataclass(frozen=True)
class ArchivedFile:
    """One file of an archive.

    What the archive task's XCom records of it, and whether this call found it already archived (``skipped``)
    instead of writing it.
    """

    record: ArchivedFileRecord
    skipped: bool


def archive_assets(
    hook: ArchiveClient,
    asset_ids: list[str],
    destination: ObjectStoragePath,
    *,
    file_name_template: str = DEFAULT_FILE_NAME_TEMPLATE,
    overwrite: bool = False,
) -> list[ArchivedFile]:
    """Download each asset to ``destination`` and write one ``manifest.json`` per job beside its files.

    :param file_name_template: path of each file under ``destination``; fields ``{job_id}``,
        ``{asset_id}``, ``{ext}``; default ``{job_id}/{asset_id}.{ext}``.
    :param overwrite: replace a different file already at a target; default ``False`` (an error).

    What the API answers is checked before anything is written: ids of Scenario's shape
    (:mod:`airflow_kling.api.ids`), the answered asset the one asked for, a media type from
    :data:`~airflow_kling.media.formats.ARCHIVED_TYPES` (its extension from that table), every target under
    ``destination``.

    :raises ScenarioResponseError: an answer fails those checks (naming the value); nothing is written.
    """
    jobs: dict[str, dict[str, Any]] = {}
    model_ids: dict[str, str | None] = {}
    planned: list[tuple[dict[str, Any], str, ObjectStoragePath]] = []
    # Every asset's answer is checked and every target placed before the first byte is written.
    for asset_id in asset_ids:
        asset = hook.get_asset(checked_id(asset_id, "asset id"))
        if checked_id(asset.get("id"), "asset id") != asset_id:
            raise ScenarioResponseError(f"Asked for asset {asset_id}, the API answered another asset")
        metadata = asset.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ScenarioResponseError(
                f"Asset {asset_id}: metadata must be an object, got {type(metadata).__name__}; nothing was written"
            )
        parent = metadata.get("parentJobId")
        job_id = checked_id(parent, "metadata.parentJobId") if parent else NO_JOB
        if job_id not in jobs:
            jobs[job_id] = hook.get_job(job_id) if job_id != NO_JOB else {}
            model_id = metadata.get("modelId") or jobs[job_id].get("modelId")
            model_ids[job_id] = model_id if is_model_id(model_id) else None
        planned.append((asset, job_id, _target(destination, file_name_template, asset, job_id)))
    folders: dict[str, list[ObjectStoragePath]] = {}
    archived: list[ArchivedFile] = []
    for asset, job_id, target in planned:
        archived.append(_archive_one(hook, asset, job_id, target, overwrite))
        if target.parent not in folders.setdefault(job_id, []):
            folders[job_id].append(target.parent)
    for job_id, job in jobs.items():
        files = [item.record for item in archived if item.record["job_id"] == job_id]
        sources = input_sources(hook, (job.get("metadata") or {}).get("input"))
        for folder in folders[job_id]:  # beside the job's files, wherever the template put them
            _write_manifest(folder, job_id, model_ids[job_id], job, files, sources)
    return archived


SOURCE_INPUTS = 8
"""File inputs of one job whose source the manifest records at most (an asset lookup each)."""
INPUT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
SOURCE_NAME = re.compile(r"^[^\x00-\x1f\x7f/\\]{1,120}$")
"""A plain file name: 1-120 characters, no folder, no control character."""


def recorded_sources(manifest: Any) -> list[tuple[str, str]]:
    """``(asset id, file name)`` of each input a manifest's ``sources`` names with a plain file name.

    The manifest is read back from storage, which others can write: at most :data:`SOURCE_INPUTS` entries,
    each name checked again (:data:`SOURCE_NAME`); anything of another shape is left out.
    """
    sources = manifest.get("sources") if isinstance(manifest, dict) else None
    found: list[tuple[str, str]] = []
    for entry in sources[:SOURCE_INPUTS] if isinstance(sources, list) else []:
        asset_id, name = (
            (entry.get("asset_id"), entry.get("name")) if isinstance(entry, dict) else (None, None)
        )
        if isinstance(asset_id, str) and isinstance(name, str) and SOURCE_NAME.fullmatch(name):
            found.append((asset_id, name))
    return found


def input_sources(hook: ArchiveClient, inputs: Any) -> list[dict[str, str]]:
    """The job's file inputs and the files they were uploaded from, in the job's order.

    Each input whose value has the shape of an asset id (at most :data:`SOURCE_INPUTS`), as ``{"input",
    "asset_id", "name"}``. ``name`` is the asset's file name as the API gives it (``metadata.fileName``, else
    ``metadata.name``), kept when it is a plain file name (:data:`SOURCE_NAME`); an upload sends only a file's
    name, never its local path. An asset the API cannot describe is left out; nothing fails the archive.
    """
    sources: list[dict[str, str]] = []
    for name, value in list(inputs.items())[:100] if isinstance(inputs, dict) else []:
        if len(sources) >= SOURCE_INPUTS:
            break
        if not (isinstance(name, str) and INPUT_NAME.fullmatch(name)):
            continue
        if not (is_id(value) and value.startswith("asset_")):
            continue
        try:
            asset = hook.get_asset(value)
        except ScenarioError:
            continue
        metadata = asset.get("metadata")
        found = (metadata.get("fileName") or metadata.get("name")) if isinstance(metadata, dict) else None
        entry = {"input": name, "asset_id": value}
        if isinstance(found, str) and SOURCE_NAME.fullmatch(found.strip()):
            entry["name"] = found.strip()
        sources.append(entry)
    return sources


def manifest_uri(file_uri: str) -> str:
    """Where the manifest of an archived file is: beside it, whatever the file name template."""
    return f"{file_uri.rsplit('/', 1)[0]}/{MANIFEST_NAME}"


def _target(
    destination: ObjectStoragePath, template: str, asset: dict[str, Any], job_id: str
) -> ObjectStoragePath:
    """Where an asset goes.

    The template filled with checked ids and the extension of its media type, proved to stay under
    ``destination``.

    :raises ScenarioResponseError: the API's media type is not one this provider archives.
    :raises ScenarioValidationError: the template has other fields, or its path leaves ``destination``.
    """
    mime = str(asset.get("mimeType") or "")
    ext = extension_for(mime)
    if ext is None:
        raise ScenarioResponseError(
            f"Asset {asset['id']} has media type {mime[:80]!r}, none of those archived ({', '.join(ARCHIVED_TYPES)})"
        )
    return destination.joinpath(*template_parts(template, job_id, str(asset["id"]), ext))


def _archive_one(
    hook: ArchiveClient, asset: dict[str, Any], job_id: str, target: ObjectStoragePath, overwrite: bool
) -> ArchivedFile:
    asset_id = str(asset["id"])
    mime = str(asset.get("mimeType") or "application/octet-stream")
    local_target = local_path(target) if is_local(target) else None
    io_target = local_target or target
    if local_target is not None:
        remove_stale_partials(local_target)
    existing = existing_checksum(io_target)
    if (
        existing is not None
        and isinstance(properties := asset.get("properties"), dict)
        and existing[0] == properties.get("size")
        and _manifest_says(io_target, asset_id, existing[1])
    ):
        hook.log.info("Asset %s already archived at %s (same size and SHA-256): skipped", asset_id, target)
        return _archived(asset_id, job_id, target, existing[0], existing[1], mime, skipped=True)
    # As storage.atomic_writer does (partial file locally, straight to the key in an object store), but the
    # commit waits for the checks below, and a download that restarts from zero needs a fresh sink.
    partial = partial_path(local_target) if local_target is not None else None
    io_target.parent.mkdir(parents=True, exist_ok=True)
    try:
        downloaded, sink = download_asset(hook, asset, lambda: (partial or target).open("wb"))
        if existing is not None and existing[1] == downloaded.sha256:
            abandon(sink)
            hook.log.info("Asset %s already archived at %s (same SHA-256): skipped", asset_id, target)
            return _archived(asset_id, job_id, target, downloaded.size, downloaded.sha256, mime, skipped=True)
        if existing is not None and not overwrite:
            abandon(sink)
            raise ScenarioDownloadError(
                f"A different file is already at {target} (SHA-256 {existing[1][:12]}..., asset {asset_id} "
                f"is {downloaded.sha256[:12]}...); pass overwrite=True to replace it"
            )
        sink.close()  # commits an object-store upload
        if partial is not None and local_target is not None:
            partial.rename(local_target)
    finally:
        if partial is not None and partial.exists():
            partial.unlink()
    hook.log.info(
        "Archived asset %s to %s (%d bytes, SHA-256 %s)", asset_id, target, downloaded.size, downloaded.sha256
    )
    return _archived(asset_id, job_id, target, downloaded.size, downloaded.sha256, mime, skipped=False)


def _archived(
    asset_id: str,
    job_id: str,
    target: ObjectStoragePath,
    size: int,
    sha256: str,
    mime_type: str,
    *,
    skipped: bool,
) -> ArchivedFile:
    uri = plain_uri(target)
    record = ArchivedFileRecord(
        asset_id=asset_id,
        job_id=job_id,
        uri=uri,
        size=size,
        sha256=sha256,
        mime_type=mime_type,
        manifest_uri=manifest_uri(uri),
    )
    return ArchivedFile(record, skipped)


def existing_checksum(target: ObjectStoragePath | Path) -> tuple[int, str] | None:
    """Size and SHA-256 of a stored file, read in chunks; ``None`` when there is none."""
    if not target.exists():
        return None
    digest = hashlib.sha256()
    size = 0
    with target.open("rb") as existing:
        while chunk := existing.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


MANIFEST_READ_LIMIT = 1024 * 1024
"""Bytes of a stored manifest read back at most (one is a few kB)."""


def read_manifest(path: ObjectStoragePath | Path) -> dict[str, Any] | None:
    """A stored ``manifest.json`` as a JSON object.

    Storage others can write: ``None`` for one over :data:`MANIFEST_READ_LIMIT` bytes, not JSON, or not an
    object.

    :raises OSError: it cannot be read.
    """
    with path.open("rb") as stored:
        raw = stored.read(MANIFEST_READ_LIMIT + 1)
    try:
        decoded = json.loads(raw) if len(raw) <= MANIFEST_READ_LIMIT else None
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None


def _manifest_says(target: ObjectStoragePath | Path, asset_id: str, sha256: str) -> bool:
    """Whether the manifest beside ``target`` records this asset with this SHA-256.

    One that :func:`read_manifest` does not read says nothing (the file is then downloaded and compared).
    """
    manifest = target.parent / MANIFEST_NAME
    if not manifest.exists():
        return False
    decoded = read_manifest(manifest)
    files = decoded.get("files") if decoded is not None else None
    return isinstance(files, list) and any(
        isinstance(entry, dict) and entry.get("asset_id") == asset_id and entry.get("sha256") == sha256
        for entry in files
    )


INPUT_TEXT_LIMIT = 2000
"""Characters of one input's text the manifest keeps; a longer one (a data URL) is recorded by its length."""


def recorded_inputs(inputs: Any) -> dict[str, Any]:
    """The job's inputs as the manifest records them.

    Numbers, booleans and texts of at most :data:`INPUT_TEXT_LIMIT` characters by name; anything else by a
    short description.
    """
    if not isinstance(inputs, dict):
        return {}
    recorded: dict[str, Any] = {}
    for name, value in list(inputs.items())[:100]:
        if (
            isinstance(value, bool | int | float)
            or value is None
            or (isinstance(value, str) and len(value) <= INPUT_TEXT_LIMIT and not value.startswith("data:"))
        ):
            recorded[str(name)] = value
        elif isinstance(value, str):
            recorded[str(name)] = f"({len(value)} characters)"
        else:
            recorded[str(name)] = f"({type(value).__name__})"
    return recorded


def _write_manifest(
    folder: ObjectStoragePath,
    job_id: str,
    model_id: str | None,
    job: dict[str, Any],
    files: list[ArchivedFileRecord],
    sources: list[dict[str, str]],
) -> None:
    metadata = job.get("metadata") or {}
    inputs = metadata.get("input") or {}
    manifest = {
        "job_id": job_id,
        "model_id": model_id,
        "inputs": recorded_inputs(inputs),
        "sources": sources,
        "output_asset_ids": list(metadata.get("assetIds") or [item["asset_id"] for item in files]),
        "creative_units_cost": job_cost(job),
        "job_created_at": job.get("createdAt"),
        "job_finished_at": job.get("updatedAt"),
        "archived_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "files": [
            {key: item[key] for key in ("asset_id", "uri", "size", "sha256", "mime_type")} for item in files
        ],
    }
    with atomic_writer(io_path(folder / MANIFEST_NAME)) as out:
        out.write(json.dumps(manifest, indent=2, sort_keys=True).encode())
