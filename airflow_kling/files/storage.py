"""Local paths and object-storage URIs handled alike, through Airflow's ``ObjectStoragePath``.

URIs are ``s3://``, ``gs://``, ``file://`` and the others of Airflow's installed providers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

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


def readable_path(
    location: str | os.PathLike[str] | ObjectStoragePath, argument: str, conn_id: str | None = None
) -> ObjectStoragePath:
    """:func:`storage_path` of a location an operator reads, once checked against the input roots.

    The location must lie under ``[kling] input_roots`` when that is set
    (:func:`~airflow_kling.files.locations.check_input_location`).

    :param argument: the name of the argument or param that gave ``location``, for the error message.
    :raises ScenarioValidationError: naming ``argument`` and the setting, before anything is read.
    """
    from airflow_kling.files.locations import check_input_location

    check_input_location(str(location), argument)
    return storage_path(location, conn_id)


def check_writable(
    location: str | os.PathLike[str] | ObjectStoragePath, argument: str, conn_id: str | None = None
) -> ObjectStoragePath:
    """Make sure files can be written under ``location`` before anything is paid for.

    It lies under ``[kling] input_roots`` when that is set
    (:func:`~airflow_kling.files.locations.check_input_location`), its filesystem can be loaded (the scheme is
    known, its package installed) and a probe file can be written there and removed.

    :param argument: the name of the argument or param that gave ``location``, for the error message.
    :raises ScenarioValidationError: naming ``argument``, the location and what is wrong.
    """
    from airflow_kling.exceptions import ScenarioValidationError
    from airflow_kling.files.locations import check_input_location

    check_input_location(str(location), argument)
    problem: str | None = None
    try:
        root = storage_path(location, conn_id)
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".kling-write-check-{uuid.uuid4().hex[:12]}"
        with probe.open("wb") as out:
            out.write(b"")
        probe.unlink()
    except Exception as error:  # every way a location can fail: unknown scheme, missing package, denied
        problem = f"{type(error).__name__}: {error}"
    if problem is not None:
        raise ScenarioValidationError(
            f"{argument}={str(location)!r} cannot be written to ({problem}). Give a local directory or "
            "an object-storage URI whose filesystem is installed (e.g. s3:// with the s3 extra) and writable."
        )
    return root


def is_local(path: ObjectStoragePath | Path) -> bool:
    """Whether ``path`` is on this machine's file system."""
    return getattr(path, "protocol", "file") in ("file", "local", "")


def local_path(path: ObjectStoragePath | Path) -> Path:
    """The filesystem path of a ``file://`` storage path."""
    if isinstance(path, Path) and not hasattr(path, "protocol"):
        return path
    return Path(path.path)  # type: ignore[union-attr]  # (an ObjectStoragePath; on 3.1 also a Path)


def io_path(path: ObjectStoragePath) -> ObjectStoragePath | Path:
    """What to read and write ``path`` through.

    Itself in an object store, a plain :class:`~pathlib.Path` for a local file (the same operations, without
    ``ObjectStoragePath``'s first use, which loads the filesystems of every installed provider: a quarter of a
    second with the amazon provider, per task process).
    """
    return local_path(path) if is_local(path) else path


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
    """Put a local file at ``destination`` (moved when local, else written with :func:`atomic_writer`).

    Returns its URI.
    """
    if is_local(destination):
        target = local_path(destination)
        target.parent.mkdir(parents=True, exist_ok=True)
        if local.resolve() != target.resolve():
            shutil.move(local, target)
        return plain_uri(destination)
    with local.open("rb") as source, atomic_writer(destination) as out:
        shutil.copyfileobj(source, out, COPY_BLOCK)
    return plain_uri(destination)


def partial_path(path: Path) -> Path:
    """A temporary name beside a local file, for writing it before it is complete."""
    return path.parent / f".{path.name}.partial-{uuid.uuid4().hex[:8]}"


def remove_stale_partials(path: ObjectStoragePath | Path) -> None:
    """Partial files that killed writers left beside a local file (never under its name): removed."""
    if path.parent.exists():
        for stale in path.parent.glob(f".{path.name}.partial-*"):
            stale.unlink()


@contextmanager
def atomic_writer(destination: ObjectStoragePath | Path) -> Iterator[IO[bytes]]:
    """Write ``destination`` so that it appears complete, or not at all, when the block ends with an error.

    Locally through a partial file renamed into place. In an object store straight to the key: an upload
    appears only once completed, and an abandoned one never does (no copy for a "rename").
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    if not is_local(destination):
        sink = destination.open("wb")
        try:
            yield sink
        except BaseException:
            abandon(sink)
            raise
        sink.close()
        return
    target = local_path(destination)
    partial = partial_path(target)
    try:
        with partial.open("wb") as sink:
            yield sink
        partial.rename(target)
    finally:
        if partial.exists():
            partial.unlink()


def abandon(sink: IO[bytes]) -> None:
    """Give up a file being written.

    An object-store upload is discarded (nothing appears), a local file just closed (its caller removes it).
    """
    discard = getattr(sink, "discard", None)
    if callable(discard):
        try:
            discard()
            # fsspec leaves a discarded file open but without a buffer: mark it closed, or its __del__ tries
            # to flush it (Airflow's ObjectStoragePath wraps the file object; the flag lives on the file).
            inner: Any = getattr(sink, "_obj", sink)
            inner.closed = True
            return
        except RuntimeError:  # fsspec's local files refuse (they write in place): closing is all there is
            pass
    sink.close()


def plain_uri(path: ObjectStoragePath) -> str:
    """The URI of a storage path without its connection id (``s3://bucket/key``, ``file:///dir/file``)."""
    protocol = path.protocol or "file"
    location = path.path
    return (
        f"{protocol}://{location}"
        if protocol != "file"
        else f"file://{location if location.startswith('/') else '/' + location}"
    )
