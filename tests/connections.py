"""The ``scenario_default`` connection a test points at an emulator, with the extras it needs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_kling.emulator import EmulatorServer


def use_connection(monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer, **extra: Any) -> None:
    """Point ``scenario_default`` at ``emulator`` for the test, with ``extra`` added to its extras."""
    connection = json.loads(emulator.connection_uri())
    connection["extra"].update(extra)
    monkeypatch.setenv("AIRFLOW_CONN_SCENARIO_DEFAULT", json.dumps(connection))
