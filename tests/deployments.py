"""What the tests that run a real Airflow share: a client of its REST API that waits for DAGs, runs and task
instances, free ports, and the teardown of every process a deployment started."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_kling.emulator import EmulatorConfig, EmulatorServer

STARTUP_LIMIT = 240.0
RUN_LIMIT = 240.0
REPO = Path(__file__).parent.parent
DAGS = REPO / "dags"
TEST_DAGS = Path(__file__).parent / "dags"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    """One emulator for a module's deployment and every run in it; ``scenario_default`` of the test process
    points at it too."""
    with (
        EmulatorServer(config=EmulatorConfig(job_seconds=3.0)) as server,
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setenv("AIRFLOW_CONN_SCENARIO_DEFAULT", server.connection_uri())
        yield server


@pytest.fixture
def scenario_emulator(emulator: EmulatorServer) -> EmulatorServer:
    """The module's emulator, with its books, faults, plans and jobs emptied for each test."""
    emulator.store.reset()
    with emulator.store.lock:
        emulator.store.jobs.clear()
    return emulator


class Deployment:
    """A running Airflow seen through its REST API, as user ``admin``; ``home`` and ``log`` are where its
    files and its components' output are, for failure messages; ``database`` its metadata database (a
    ``psycopg2`` connection string), for a test that writes what one of Airflow's own components would."""

    def __init__(self, api: str, home: Path, log: Path, database: str) -> None:
        self.api, self.home, self.log, self.database = api, home, log, database
        self.session = requests.Session()

    def login(self) -> None:
        self.session.headers["Authorization"] = f"Bearer {self.token('admin', 'admin')}"

    def token(self, username: str, password: str) -> str:
        """A JWT for a user of the simple auth manager, as ``POST /auth/token`` gives it (waits for the
        api-server to answer)."""
        deadline = time.monotonic() + STARTUP_LIMIT
        while time.monotonic() < deadline:
            try:
                answer = requests.post(
                    f"{self.api}/auth/token", json={"username": username, "password": password}, timeout=5
                )
                if answer.status_code in (200, 201):
                    return str(answer.json()["access_token"])
            except requests.ConnectionError:
                pass
            time.sleep(2)
        pytest.fail(f"the api-server did not answer within {STARTUP_LIMIT:.0f} s:\n{self.tail()}")

    def get(self, path: str) -> Any:
        answer = self.session.get(f"{self.api}/api/v2{path}", timeout=30)  # a busy api-server on 2 cores
        answer.raise_for_status()
        return answer.json()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""

    def wait_for_dag(self, dag_id: str) -> None:
        """The dag-processor has to parse a DAG before it can be triggered."""
        deadline = time.monotonic() + STARTUP_LIMIT
        while time.monotonic() < deadline:
            if self.session.get(f"{self.api}/api/v2/dags/{dag_id}", timeout=10).status_code == 200:
                return
            time.sleep(2)
        pytest.fail(f"{dag_id} was not parsed within {STARTUP_LIMIT:.0f} s:\n{self.tail()}")

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        """Start a run through the REST API, as a user's script would; returns its run id."""
        self.wait_for_dag(dag_id)
        for _ in range(3):
            created = self.session.post(
                f"{self.api}/api/v2/dags/{dag_id}/dagRuns",
                json={"logical_date": None, "conf": conf},
                timeout=10,
            )
            if created.status_code < 500:
                break
            # Airflow on SQLite answers 500 when its database is locked by another component (its log says
            # "database is locked"): the run was not created; a user would send it again.
            time.sleep(2)
        assert created.status_code in (200, 201), created.text
        return str(created.json()["dag_run_id"])

    def task(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        return dict(self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"))

    def wait_for_task(self, dag_id: str, run_id: str, task_id: str, states: set[str]) -> dict[str, Any]:
        deadline = time.monotonic() + RUN_LIMIT
        while time.monotonic() < deadline:
            instance = self.task(dag_id, run_id, task_id)
            if instance.get("state") in states:
                return instance
            time.sleep(0.5)
        pytest.fail(f"{task_id} never reached {states}:\n{self.tail()}")

    def wait_for_run(self, dag_id: str, run_id: str, task_id: str) -> tuple[str, set[str]]:
        """The run's final state, and every state ``task_id`` was seen in on the way."""
        seen: set[str] = set()
        deadline = time.monotonic() + RUN_LIMIT
        state = "queued"
        while time.monotonic() < deadline:
            state = self.get(f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
            instance = self.task(dag_id, run_id, task_id)
            if instance.get("state"):
                seen.add(instance["state"])
            if state in ("success", "failed"):
                break
            time.sleep(1)
        return state, seen

    def logs_of(self, dag_id: str, limit: int = 4000, task_id: str = "*") -> str:
        """Every log file Airflow wrote for a DAG's tasks (``task_id``, a glob; default all), each try's and
        its triggers', each cut to its last ``limit`` characters, and the triggerer's last lines: for failure
        messages."""
        files = sorted((self.home / "logs").glob(f"dag_id={dag_id}/*/task_id={task_id}/**/*.log*"))
        lines = self.log.read_text(errors="replace").splitlines()
        triggerer = [line for line in lines if "triggerer" in line]
        mentions = [line for line in lines if dag_id in line and "dag-processor" not in line]
        return "\n".join(
            [f"== {path}\n{path.read_text(errors='replace')[-limit:]}" for path in files]
            + ["== triggerer", *triggerer[-40:], f"== {dag_id} in the components' output", *mentions[-60:]]
        )


@contextlib.contextmanager
def standalone(
    tmp_path: Path,
    connection_uri: str,
    *,
    users: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    dag_files: Sequence[Path] = (),
) -> Iterator[Deployment]:
    """``airflow standalone`` (scheduler, dag-processor, triggerer, api-server, LocalExecutor) on a
    PostgreSQL of its own (SQLite's one writer answers a REST write "Database error" under a batch's load),
    on loopback with the example DAGs and the test DAGs, ``scenario_default`` pointing at ``connection_uri``,
    logged in as ``admin``; every process it started is stopped at the end.

    :param users: the simple auth manager's users, name to role (``admin`` is always an admin); each
        user's password is its name.
    :param env: more settings for every component; with ``AIRFLOW__CORE__AUTH_MANAGER`` the components
        are started one by one (``airflow standalone`` would replace the auth manager).
    :param dag_files: more DAG files for its DAG folder.
    """
    home = tmp_path / "airflow"
    shutil.copytree(DAGS, home / "dags")
    for dag_file in (TEST_DAGS / "provider_test_dags.py", *dag_files):
        shutil.copy(dag_file, home / "dags" / dag_file.name)
    roles = {"admin": "admin", **(users or {})}
    (home / "simple_auth_manager_passwords.json.generated").write_text(
        json.dumps({name: name for name in roles})
    )
    from tests.components import start_postgres

    database_root = Path(tempfile.mkdtemp(prefix="kling-postgres-"))  # pytest's tmp is closed to `nobody`
    postgres, database_port = start_postgres(database_root, tmp_path / "postgres.log")
    try:
        port = free_port()
        bin_dir = str(Path(sys.executable).parent)
        settings = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",  # standalone starts its parts as `airflow`
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://airflow@127.0.0.1:{database_port}/airflow",
            # Airflow 3.1's scheduler can fail a deferred task whose trigger fires within seconds ("finished with
            # state success, but the task instance's state attribute is queued"); its retry adopts the job.
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "5",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
                f"{name}:{role}" for name, role in roles.items()
            ),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW_CONN_SCENARIO_DEFAULT": connection_uri,
            **(env or {}),
        }
        log = tmp_path / "standalone.log"
        airflow = str(Path(bin_dir) / "airflow")
        if "AIRFLOW__CORE__AUTH_MANAGER" in settings:
            # `airflow standalone` forces the simple auth manager: start its components one by one instead.
            subprocess.run(
                [airflow, "db", "migrate"], env=settings, check=True, capture_output=True, timeout=300
            )
            commands = [[airflow, part] for part in ("api-server", "scheduler", "dag-processor", "triggerer")]
        else:
            commands = [[airflow, "standalone"]]
        processes = []
        with log.open("ab") as output:
            for command in commands:
                processes.append(
                    subprocess.Popen(
                        command, env=settings, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
        try:
            deployment = Deployment(
                f"http://127.0.0.1:{port}",
                home,
                log,
                database=f"host=127.0.0.1 port={database_port} user=airflow dbname=airflow",
            )
            deployment.login()
            yield deployment
        finally:
            for process in processes:
                stop_process_tree(process.pid)
    finally:
        postgres.stop()
        shutil.rmtree(database_root, ignore_errors=True)


def stop_process_tree(pid: int) -> None:
    """Stop standalone and every process it started (some start sessions of their own), also on failure."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    family = [root, *root.children(recursive=True)]
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.terminate()
    _, alive = psutil.wait_procs(family, timeout=30)
    for member in alive + [
        p for p in psutil.Process().children(recursive=True) if "airflow" in " ".join(_cmdline(p))
    ]:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(alive, timeout=10)


def _cmdline(process: Any) -> list[str]:
    try:
        return list(process.cmdline())
    except Exception:
        return []
