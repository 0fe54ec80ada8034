"""What the tests that run a real Airflow share: a client of its REST API that waits for DAGs, runs and task
instances, free ports, and the teardown of every process a deployment started."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import requests

STARTUP_LIMIT = 240.0
RUN_LIMIT = 240.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Deployment:
    """A running Airflow seen through its REST API, as user ``admin``; ``home`` and ``log`` are where its
    files and its components' output are, for failure messages."""

    def __init__(self, api: str, home: Path, log: Path) -> None:
        self.api, self.home, self.log = api, home, log
        self.session = requests.Session()

    def login(self) -> None:
        deadline = time.monotonic() + STARTUP_LIMIT
        while time.monotonic() < deadline:
            try:
                answer = self.session.post(
                    f"{self.api}/auth/token", json={"username": "admin", "password": "admin"}, timeout=5
                )
                if answer.status_code in (200, 201):
                    self.session.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
                    return
            except requests.ConnectionError:
                pass
            time.sleep(2)
        pytest.fail(f"the api-server did not answer within {STARTUP_LIMIT:.0f} s:\n{self.tail()}")

    def get(self, path: str) -> Any:
        answer = self.session.get(f"{self.api}/api/v2{path}", timeout=10)
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
        created = self.session.post(
            f"{self.api}/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf}, timeout=10
        )
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

    def logs_of(self, dag_id: str, limit: int = 4000) -> str:
        """Every log file Airflow wrote for a DAG (task tries and their triggers), each cut to its last
        ``limit`` characters, and the triggerer's last lines: for failure messages."""
        files = sorted((self.home / "logs").glob(f"dag_id={dag_id}/**/*.log*"))  # every run and try
        lines = self.log.read_text(errors="replace").splitlines()
        triggerer = [line for line in lines if "triggerer" in line]
        mentions = [line for line in lines if dag_id in line and "dag-processor" not in line]
        return "\n".join(
            [f"== {path}\n{path.read_text(errors='replace')[-limit:]}" for path in files]
            + ["== triggerer", *triggerer[-40:], f"== {dag_id} in the components' output", *mentions[-60:]]
        )


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
