"""Local paths and object-storage URIs (``s3://``, ``gs://``, ``file://``, ...) handled alike, through
Airflow's ``ObjectStoragePath``."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

COPY_BLOCK = 8 * 1024 * 1024


def storage_path(
    location: str | os.PathLike[str] | ObjectStoragePath, conn_id: str | None = None
) -> ObjectStoragePath:
    """An ``ObjectStoragePath`` for a local path or a URI; ``conn_id`` names the object store's connection."""
    from airflow.sdk import ObjectStoragePath

    if isinstance(location, ObjectStoragePath):
        return location
    text = os.fspath(location)
    if "://" not in text:
        text = f"file://{Path(text).resolve()}"
    return ObjectStoragePath(text, conn_id=conn_id) if conn_id else ObjectStoragePath(text)


def is_local(path: ObjectStoragePath) -> bool:
    return path.protocol in ("file", "local", "")


def local_path(path: ObjectStoragePath) -> Path:
    """The filesystem path of a ``file://`` storage path."""
    return Path(path.path)


@contextmanager
def local_copy(path: ObjectStoragePath) -> Iterator[Path]:
    """A local file with ``path``'s bytes: the file itself when local, else a temporary download."""
    if is_local(path):
        yield local_path(path)
        return
    with tempfile.TemporaryDirectory(prefix="kling-") as directory:
        target = Path(directory) / path.name
        with path.open("rb") as source, target.open("wb") as out:
            shutil.copyfileobj(source, out, COPY_BLOCK)
        yield target


def publish(local: Path, destination: ObjectStoragePath) -> str:
    """Put a local file at ``destination`` (moved when local, copied through a temporary name and renamed
    when remote, so no partial object appears under the final name); returns its URI."""
    if is_local(destination):
        target = local_path(destination)
        target.parent.mkdir(parents=True, exist_ok=True)
        if local.resolve() != target.resolve():
            shutil.move(local, target)
        return plain_uri(destination)
    partial = destination.parent / f".{destination.name}.partial"
    with local.open("rb") as source, partial.open("wb") as out:
        shutil.copyfileobj(source, out, COPY_BLOCK)
    partial.rename(destination)
    return plain_uri(destination)


def plain_uri(path: ObjectStoragePath) -> str:
    """The URI of a storage path without its connection id (``s3://bucket/key``, ``file:///dir/file``)."""
    protocol = path.protocol or "file"
    location = path.path
    return (
        f"{protocol}://{location}"
        if protocol != "file"
        else f"file://{location if location.startswith('/') else '/' + location}"
    )
