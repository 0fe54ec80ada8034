"""A local, faithful Scenario API for the demo, the tests and DAG development with no account.

Run it with ``python -m airflow_kling.emulator``, or in-process with :func:`run_emulator`.
"""

from __future__ import annotations

from airflow_kling.emulator.server import EmulatorServer, run_emulator, spawn_emulator
from airflow_kling.emulator.store import EmulatorConfig, Fault

__all__ = ["EmulatorConfig", "EmulatorServer", "Fault", "run_emulator", "spawn_emulator"]
