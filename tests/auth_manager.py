"""An auth manager for the UI tests: Airflow's simple auth manager, with one per-DAG rule of the kind FAB's
``access_control`` or a Keycloak policy gives: the user ``outsider`` (a viewer) may not read the example
pipeline, and may read every other DAG. Loaded by the api-server through ``[core] auth_manager``."""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

DENIED = {"outsider": {"kling_lipsync_pipeline"}}
"""User name to the DAG ids that user may not read."""


class PerDagAuthManager(SimpleAuthManager):  # type: ignore[misc]
    def is_authorized_dag(
        self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None
    ) -> bool:
        if details is not None and details.id in DENIED.get(user.get_name(), set()):
            return False
        return bool(
            super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
        )
