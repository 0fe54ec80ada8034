"""Pytest fixtures for DAG authors.

``scenario_emulator`` starts an emulator and points ``scenario_default`` at it.

Opt-in, so that no other pytest session of an environment with the provider loads it: name it in your
``conftest.py`` (``pytest_plugins = ["airflow_kling.emulator.pytest_plugin"]``) or run ``pytest -p
airflow_kling.emulator.pytest_plugin``; then::

    def test_my_dag(scenario_emulator):
        scenario_emulator.plan_jobs("failure", error="No face found")
        ...
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_kling.emulator.server import EmulatorServer


@pytest.fixture
def scenario_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    """A fresh emulator on a free loopback port, jobs lasting 1 s, ``AIRFLOW_CONN_SCENARIO_DEFAULT`` set."""
    from airflow_kling.emulator.store import EmulatorConfig

    with EmulatorServer(config=EmulatorConfig(job_seconds=1.0)) as server:
        monkeypatch.setenv("AIRFLOW_CONN_SCENARIO_DEFAULT", server.connection_uri())
        yield server
