"""What the preview trusts, and nothing else.

Archive locations under the roots the api-server allows, connections on its allowlists, and video types it
plays.

XComs are written by every task of a DAG and, through the REST API, by any user allowed to edit that DAG's
XComs, so a location or a connection id read from one is a claim, never an instruction. The preview opens a
file only under an allowed archive root (:mod:`airflow_kling.files.locations`: local folders resolved through
their symbolic links, object-store prefixes, never ``http(s)``), asks Scenario only through an allowed
connection, and reads an object store only through an allowed storage connection (or none: the
api-server's own credentials).

Settings, section ``[kling_preview]`` of the api-server's Airflow configuration (or the environment:
``AIRFLOW__KLING_PREVIEW__ARCHIVE_ROOTS`` and so on), each a comma-separated list:

- ``archive_roots``: default ``$AIRFLOW_HOME/kling-archive``, the example DAGs' default archive;
- ``conn_ids``: Scenario connections, default ``scenario_default``;
- ``storage_conn_ids``: object-store connections, default none.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_kling.files.locations import Root, UntrustedValue, roots, under_roots
from airflow_kling.hooks.connection import DEFAULT_CONN_ID

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

SECTION = "kling_preview"
PLAYABLE_TYPES = frozenset({"video/mp4", "video/quicktime", "image/png", "image/jpeg", "image/webp"})
"""The only media types the preview sends as such (MP4 and QuickTime video, PNG, JPEG and WebP pictures: never
SVG, HTML or anything else a browser would run); anything else is sent as a download."""

__all__ = ["PLAYABLE_TYPES", "SECTION", "PreviewTrust", "UntrustedValue", "playable_type", "preview_trust"]


@dataclass(frozen=True)
class PreviewTrust:
    """What the preview may read: the archive roots and the connections it may use (from ``[kling]``)."""

    archive_roots: tuple[Root, ...]
    conn_ids: frozenset[str]
    storage_conn_ids: frozenset[str]

    @classmethod
    def from_config(cls) -> PreviewTrust:
        """The api-server's settings (see the module's docstring)."""
        from airflow_kling.version_compat import conf

        def items(option: str, default: str) -> list[str]:
            text = conf.get(SECTION, option, fallback=None) or default
            return [item.strip() for item in text.split(",") if item.strip()]

        home = os.path.expanduser(os.environ.get("AIRFLOW_HOME", "~/airflow"))
        archive = ",".join(items("archive_roots", os.path.join(home, "kling-archive")))
        return cls(
            archive_roots=roots(archive, f"[{SECTION}] archive_roots"),
            conn_ids=frozenset(items("conn_ids", DEFAULT_CONN_ID)),
            storage_conn_ids=frozenset(items("storage_conn_ids", "")),
        )

    def scenario_conn_id(self, conn_id: str) -> str:
        """``conn_id`` when the preview may ask Scenario through it.

        :raises UntrustedValue: naming the connection and the setting that would allow it.
        """
        if conn_id not in self.conn_ids:
            raise UntrustedValue(
                f"connection {conn_id!r} is not one the preview may use (add it to [{SECTION}] conn_ids)"
            )
        return conn_id

    def archived_path(self, uri: str, storage_conn_id: str | None) -> ObjectStoragePath | Path:
        """Where to read an archived file named by ``uri``.

        Its resolved local path, or an object-store path through ``storage_conn_id``, only under an allowed
        root.

        :raises UntrustedValue: naming what is not allowed.
        """
        from airflow_kling.files.storage import storage_path

        if storage_conn_id is not None and storage_conn_id not in self.storage_conn_ids:
            raise UntrustedValue(
                f"storage connection {storage_conn_id!r} is not one the preview may use "
                f"(add it to [{SECTION}] storage_conn_ids)"
            )
        try:
            scheme, path = under_roots(uri, self.archive_roots)
        except UntrustedValue as error:
            raise UntrustedValue(f"{error} ([{SECTION}] archive_roots)") from None
        if scheme == "file":
            return Path(path)
        return storage_path(f"{scheme}://{path}", storage_conn_id)


@functools.cache
def preview_trust() -> PreviewTrust:
    """The api-server's settings, read once per process."""
    return PreviewTrust.from_config()


def playable_type(mime_type: str | None) -> str | None:
    """``mime_type`` without parameters when the preview may send it as it is, else ``None``.

    The types it may send are :data:`PLAYABLE_TYPES`.
    """
    bare = (mime_type or "").split(";", 1)[0].strip().lower()
    return bare if bare in PLAYABLE_TYPES else None
