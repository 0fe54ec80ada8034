"""What every Scenario operator and sensor has: a connection id and, from it, a sync hook."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_kling.hooks.connection import DEFAULT_CONN_ID

if TYPE_CHECKING:
    from airflow_kling.hooks.scenario import ScenarioHook

__all__ = ["DEFAULT_CONN_ID", "ScenarioHookMixin", "is_literal", "non_negative_number"]


def is_literal(value: Any) -> bool:
    """Whether a DAG file fixes ``value`` as it is.

    A plain value, not a Jinja template (``{{``, ``{%``) nor an XCom reference that only a run resolves.
    """
    if isinstance(value, str):
        return "{{" not in value and "{%" not in value
    return value is None or isinstance(value, bool | int | float)


class ScenarioHookMixin:
    """Gives an operator or sensor its :class:`~airflow_kling.hooks.scenario.ScenarioHook`.

    The hook is built on first use (not at DAG parse) from ``scenario_conn_id`` (default
    :data:`DEFAULT_CONN_ID`, ``scenario_default``) and ``project_id`` (default none: the connection's
    project).
    """

    scenario_conn_id: str = DEFAULT_CONN_ID
    project_id: str | None = None

    @cached_property
    def hook(self) -> ScenarioHook:
        """The sync hook of ``scenario_conn_id``, acting in ``project_id``."""
        from airflow_kling.hooks.scenario import ScenarioHook

        return ScenarioHook(self.scenario_conn_id, project_id=self.project_id)


def non_negative_number(value: Any, name: str, unit: str) -> float:
    """``value`` (a number, or a text a template rendered) as a float, 0 or more.

    :param name: the argument, named in the error; ``unit``: what the number counts (``"seconds"``).
    :raises ScenarioValidationError: naming ``name`` and what it must be.
    """
    from airflow_kling.exceptions import ScenarioValidationError

    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if number < 0 or number != number or isinstance(value, bool):
        raise ScenarioValidationError(f"{name} must be a number of {unit}, 0 or more, got {value!r}")
    return number
