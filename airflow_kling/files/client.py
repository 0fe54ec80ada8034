"""What the file transfers need of :class:`~airflow_kling.hooks.scenario.ScenarioHook`, as protocols.

Uploads and downloads take a :class:`TransferClient` (its API calls and its one request path, with the retry
rules, for presigned URLs), the archive an :class:`ArchiveClient` (that, and reading jobs and assets).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import requests

    from airflow_kling.api.contract import ObjectCall


class TransferClient(Protocol):
    """The narrow part of the sync hook that transfers use."""

    @property
    def log(self) -> Any:
        """The hook's logger."""

    def request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = ..., body: Any = ...
    ) -> tuple[int, dict[str, Any]]:
        """Call the API (with the retry rules); returns (status, answer)."""

    def send(
        self,
        method: str,
        url: str,
        *,
        label: str,
        make_kwargs: Callable[[], dict[str, Any]],
        submits_job: bool = ...,
        stream: bool = ...,
    ) -> requests.Response:
        """Send a request to an absolute ``url`` (retried); ``make_kwargs`` gives each try's arguments."""

    def get_object(self, call: ObjectCall, *ids: str) -> dict[str, Any]:
        """Send ``call`` for ``ids``; its answer's object."""

    def get_download_url(self, asset_id: str) -> str:
        """A signed URL to an asset's file."""


class ArchiveClient(TransferClient, Protocol):
    """The narrow part of the sync hook that the archive uses."""

    def get_job(self, job_id: str) -> dict[str, Any]:
        """The job ``job_id``."""

    def get_asset(self, asset_id: str) -> dict[str, Any]:
        """The asset ``asset_id``."""
