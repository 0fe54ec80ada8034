"""Test set-up: a private AIRFLOW_HOME, and the helpers every test module shares.

The ``scenario_emulator`` fixture comes from the provider's own pytest plugin
(``airflow_kling.emulator.pytest_plugin``, loaded with ``-p`` by ``addopts``), the one DAG authors use too.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_home = tempfile.mkdtemp(prefix="airflow-kling-tests-")
# Each test process's AIRFLOW_HOME (about 30 MB) goes with it: a run leaves no directory behind.
atexit.register(shutil.rmtree, _home, ignore_errors=True)
os.environ["AIRFLOW_HOME"] = _home
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
for _name in ("SCENARIO_SDK_API_KEY", "SCENARIO_SDK_API_SECRET", "SCENARIO_BASE_URL"):
    os.environ.pop(_name, None)
# The suite's second model (tests/upscaler_model.py), named as a user names a spec of their own; every Airflow
# process the tests start (dags test, standalone, the cluster) inherits it, and imports it from the repository.
_repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ["AIRFLOW__KLING__MODEL_SPECS"] = "tests.upscaler_model:UPSCALER"
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_repo, os.environ.get("PYTHONPATH")]))


import logging  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

import pytest  # noqa: E402

if TYPE_CHECKING:
    from airflow_kling.emulator import EmulatorServer
    from airflow_kling.hooks.scenario import ScenarioHook


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """The tests' AIRFLOW_HOME, its database migrated and the test DAGs serialized (once per process)."""
    from tests.airflow_runs import prepare_airflow_home

    return prepare_airflow_home()


@pytest.fixture(scope="module")
def example_home(airflow_home: Path) -> Path:
    """The tests' AIRFLOW_HOME with the example DAGs serialized beside the test DAGs, and the examples' pool
    (``kling_lipsync``, 2 slots)."""
    import shutil
    import subprocess

    from tests.airflow_runs import airflow_bin

    for dag_file in (Path(__file__).parent.parent / "dags").glob("*.py"):
        shutil.copy(dag_file, airflow_home / "dags" / dag_file.name)
    subprocess.run([airflow_bin(), "dags", "reserialize"], check=True, capture_output=True, timeout=300)
    subprocess.run(
        [airflow_bin(), "pools", "set", "kling_lipsync", "2", "Scenario parallel jobs", "--include-deferred"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return airflow_home


@pytest.fixture
def hook(scenario_emulator: EmulatorServer) -> ScenarioHook:
    """A sync hook on ``scenario_default``, which points at the test's emulator."""
    from airflow_kling.hooks.scenario import ScenarioHook

    return ScenarioHook()


@pytest.fixture
def inputs(scenario_emulator: EmulatorServer) -> dict[str, object]:
    """Kling Lipsync's inputs in text mode, on the sample video uploaded to the test's emulator."""
    from airflow_kling.hooks.scenario import ScenarioHook
    from tests.media_samples import sample_video

    return {"videoUrl": ScenarioHook().upload_asset(sample_video()), "text": "hello there"}


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


UNGROUPED = pytest.StashKey[bool]()
UNGROUPED_MESSAGE = (
    "--dist loadgroup did not group the tests marked xdist_group: this pytest and pytest-xdist do not work "
    "together (pytest-dev/pytest-xdist#1386); install the versions of constraints/"
)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fail the tests marked ``xdist_group`` when ``--dist loadgroup`` did not group them.

    The groups keep an Airflow deployment or a cluster to one worker; ungrouped, every worker starts its own
    (pytest-xdist marks a group in the node id, which pytest 9.2 no longer reads: pytest-dev/pytest-xdist#1386).
    """
    if not getattr(config.option, "loadgroup", False):  # set on xdist's workers under --dist loadgroup
        return
    for item in items:
        if item.get_closest_marker("xdist_group") is not None and "@" not in item.nodeid.rpartition("]")[2]:
            item.stash[UNGROUPED] = True


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture starts a deployment: an ungrouped test of a group fails, saying why."""
    if UNGROUPED in item.stash:
        pytest.fail(UNGROUPED_MESSAGE, pytrace=False)
