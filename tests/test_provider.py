"""The package is a registered Airflow provider, with a connection form Airflow 3 shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_kling import get_provider_info


def test_connection_form_through_providers_manager() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-kling" in manager.providers
    assert manager.providers["airflow-provider-kling"].data["connection-types"][0]["hook-class-name"] == (
        "airflow_kling.hooks.scenario.ScenarioHook"
    )
    behaviour = manager.field_behaviours["scenario"]
    assert behaviour["relabeling"] == {"login": "API key", "password": "API secret", "host": "API base URL"}
    assert set(behaviour["hidden_fields"]) == {"schema", "port"}
    widgets = manager.connection_form_widgets
    assert {"extra__scenario__project_id", "extra__scenario__timeout", "extra__scenario__max_retries"} <= set(
        widgets
    )
    timeout = widgets["extra__scenario__timeout"]
    assert timeout.field_name == "timeout"
    assert timeout.field["schema"]["title"] == "Timeout (seconds)"
    assert timeout.field["schema"]["type"] == ["number", "null"]


def test_hook_is_found_by_the_task_runtime_for_the_connection_type() -> None:
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hook_info = ProvidersManagerTaskRuntime().hooks["scenario"]
    assert hook_info is not None
    assert hook_info.hook_class_name == "airflow_kling.hooks.scenario.ScenarioHook"
    assert hook_info.connection_id_attribute_name == "scenario_conn_id"


def test_provider_info_is_plain_data_and_imports_cheaply() -> None:
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-kling"
    (connection,) = info["connection-types"]
    assert connection["connection-type"] == "scenario"


@pytest.mark.parametrize("command", [["providers", "list"], ["providers", "hooks"]])
def test_airflow_cli_lists_the_provider(command: list[str], tmp_path: Path) -> None:
    airflow = Path(sys.executable).with_name("airflow")
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    result = subprocess.run(
        [str(airflow), *command, "--output", "plain"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    expected = (
        "airflow-provider-kling" if command[1] == "list" else "airflow_kling.hooks.scenario.ScenarioHook"
    )
    assert expected in result.stdout
