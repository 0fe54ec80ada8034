"""Test set-up: a private AIRFLOW_HOME, and the helpers every test module shares.

The ``scenario_emulator`` fixture comes from the provider's own pytest plugin
(``airflow_kling.emulator.pytest_plugin``, loaded with ``-p`` by ``addopts``), the one DAG authors use too.
"""

from __future__ import annotations

import os
import tempfile

_home = tempfile.mkdtemp(prefix="airflow-kling-tests-")
os.environ["AIRFLOW_HOME"] = _home
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
for _name in ("SCENARIO_SDK_API_KEY", "SCENARIO_SDK_API_SECRET", "SCENARIO_BASE_URL"):
    os.environ.pop(_name, None)


import logging  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def captured_logs(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> Iterator[Callable[[], str]]:
    """Everything logged during the test, through structlog (Airflow's task and hook loggers), the
    standard library and the process's stdout/stderr, as one text."""
    import structlog

    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:

        def text() -> str:
            out, err = capfd.readouterr()
            captured.append(out + err)
            rendered = "\n".join(" ".join(f"{k}={v}" for k, v in event.items()) for event in events)
            return "\n".join([rendered, caplog.text, *captured])

        captured: list[str] = []
        yield text
