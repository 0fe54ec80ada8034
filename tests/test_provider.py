"""The package is a registered Airflow provider, with a connection form Airflow 3 shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_kling import get_provider_info

# On every line: the connection form and provider discovery changed between lines.
pytestmark = pytest.mark.every_line


def test_connection_form_as_the_api_server_serves_it() -> None:
    """What the UI's connection form shows for the type Scenario, read the way the api-server reads it (on 3.1
    from the hook's methods, on 3.2+ from get_provider_info)."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    (meta,) = [m.model_dump() for m in HookMetaService.hook_meta_data() if m.connection_type == "scenario"]
    assert meta["hook_name"] == "Scenario"
    standard = meta["standard_fields"]
    assert standard["login"]["title"] == "API key"
    assert standard["password"]["title"] == "API secret"
    assert standard["host"]["title"] == "API base URL"
    assert standard["port"]["hidden"] is True
    assert standard["url_schema"]["hidden"] is True
    extra = meta["extra_fields"]
    assert set(extra) == {"project_id", "timeout", "web_url", "max_retries"}
    assert extra["timeout"]["schema"]["title"] == "Timeout (seconds)"
    assert "integer" in extra["max_retries"]["schema"]["type"]
    assert extra["project_id"]["description"].startswith("Sent as projectId")


def test_no_deprecated_connection_form_on_newer_airflow() -> None:
    """Airflow 3.2+ reads the form from get_provider_info (3.3 warns about a hook that declares it)."""
    from airflow_kling.hooks.scenario import ScenarioHook
    from airflow_kling.version_compat import AIRFLOW_V_3_2_PLUS

    declared_on_hook = {"get_ui_field_behaviour", "get_connection_form_widgets"} & set(vars(ScenarioHook))
    assert declared_on_hook == (
        set() if AIRFLOW_V_3_2_PLUS else {"get_ui_field_behaviour", "get_connection_form_widgets"}
    )


def test_hook_is_found_by_the_task_runtime_for_the_connection_type() -> None:
    from importlib.util import find_spec

    if find_spec("airflow.sdk.providers_manager_runtime"):  # the task runtime's own manager (newer lines)
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime as Manager
    else:  # Airflow 3.1: the task runtime uses the core one
        from airflow.providers_manager import ProvidersManager as Manager  # type: ignore[assignment]

    hook_info = Manager().hooks["scenario"]
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


def test_the_providers_page_shows_the_description_as_written() -> None:
    from airflow.api_fastapi.core_api.services.public.providers import _provider_mapper
    from airflow.providers_manager import ProviderInfo

    from airflow_kling import __version__, get_provider_info

    info = get_provider_info()
    shown = _provider_mapper(ProviderInfo(__version__, {**info, "documentation-url": None}))
    assert shown.description == info["description"].strip(" .")


def test_the_providers_page_links_the_packages_own_documentation() -> None:
    """Airflow reads the link from the package's ``Documentation`` project URL; without one its page links
    a page of the Airflow site that does not exist for this provider."""
    from airflow.providers_manager import ProvidersManager

    provider = ProvidersManager().providers["airflow-provider-kling"]
    # (Airflow 3.1 keeps the space after the metadata's comma; a browser's link ignores it.)
    assert provider.data["documentation-url"].strip() == "https://pypi.org/project/airflow-provider-kling/"
