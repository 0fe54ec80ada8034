"""What every Scenario operator and sensor has: a connection id and, from it, a sync hook."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from airflow_kling.hooks.connection import DEFAULT_CONN_ID

if TYPE_CHECKING:
    from airflow_kling.hooks.scenario import ScenarioHook

__all__ = ["DEFAULT_CONN_ID", "ScenarioHookMixin"]


class ScenarioHookMixin:
    """Gives an operator or sensor its :class:`~airflow_kling.hooks.scenario.ScenarioHook`, built on first use
    (not at DAG parse) from ``scenario_conn_id`` (default :data:`DEFAULT_CONN_ID`, ``scenario_default``) and
    ``project_id`` (default none: the connection's project)."""

    scenario_conn_id: str = DEFAULT_CONN_ID
    project_id: str | None = None

    @cached_property
    def hook(self) -> ScenarioHook:
        """The sync hook of ``scenario_conn_id``, acting in ``project_id``."""
        from airflow_kling.hooks.scenario import ScenarioHook

        return ScenarioHook(self.scenario_conn_id, project_id=self.project_id)
