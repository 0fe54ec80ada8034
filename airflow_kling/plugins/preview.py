"""The Airflow plugin.

A "Lipsync preview" tab on every task instance page and a "Lipsync videos" tab on every DAG run page, each an
iframe on the plugin's own FastAPI app.

Airflow loads this module in every component (a task process too, for macros), so nothing heavy is
imported here: the FastAPI app is built when the api-server first asks for it.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/kling/preview"
"""Where the api-server mounts the app (below Airflow's own ``base_url``)."""

EXTERNAL_VIEWS = [
    {
        "name": "Lipsync preview",
        # Relative, so that it resolves below the UI's base URL; Airflow fills the placeholders.
        "href": f"{URL_PREFIX.lstrip('/')}/ti/{{DAG_ID}}/{{RUN_ID}}/{{TASK_ID}}/{{MAP_INDEX}}",
        "destination": "task_instance",
        "url_route": "kling-lipsync-preview",
    },
    {
        "name": "Lipsync videos",
        "href": f"{URL_PREFIX.lstrip('/')}/run/{{DAG_ID}}/{{RUN_ID}}",
        "destination": "dag_run",
        "url_route": "kling-lipsync-videos",
    },
]


class _FastAPIApps:
    """``fastapi_apps``, built on first read.

    Only the api-server reads it, and FastAPI costs a task process over half a second to import.
    """

    def __get__(self, instance: object, owner: type) -> list[dict[str, Any]]:
        from airflow_kling.plugins.app import app

        return [{"app": app, "url_prefix": URL_PREFIX, "name": "Kling Lipsync preview"}]


class KlingPreviewPlugin(AirflowPlugin):
    """Shows a lipsync's video, playable and seekable, beside its job, inputs, cost and archive."""

    name = "kling_lipsync_preview"
    external_views = EXTERNAL_VIEWS
    fastapi_apps = _FastAPIApps()  # a list when read, like AirflowPlugin's
