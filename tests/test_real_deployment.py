"""A real Airflow 3 on loopback: ``airflow standalone`` (scheduler, dag-processor, triggerer, api-server,
LocalExecutor, SQLite) with the provider installed and the emulator running. The pipeline is triggered
through the REST API and must succeed with its lipsync task deferred to the real triggerer."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_kling.emulator import EmulatorServer

DAGS = Path(__file__).parent.parent / "dags"
DAG_ID = "kling_lipsync_pipeline"
STARTUP_LIMIT = 240.0
RUN_LIMIT = 240.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Deployment:
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


@pytest.fixture
def deployment(scenario_emulator: EmulatorServer, tmp_path: Path) -> Iterator[Deployment]:
    home = tmp_path / "airflow"
    shutil.copytree(DAGS, home / "dags")
    (home / "simple_auth_manager_passwords.json.generated").write_text(json.dumps({"admin": "admin"}))
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",  # standalone starts its parts as `airflow`
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW_CONN_SCENARIO_DEFAULT": scenario_emulator.connection_uri(),
    }
    log = tmp_path / "standalone.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(Path(bin_dir) / "airflow"), "standalone"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deployment = Deployment(f"http://127.0.0.1:{port}", home, log)
        deployment.login()
        yield deployment
    finally:
        stop_process_tree(process.pid)


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


def test_pipeline_in_a_real_airflow(
    deployment: Deployment, scenario_emulator: EmulatorServer, tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    deadline = time.monotonic() + STARTUP_LIMIT
    while time.monotonic() < deadline:  # the dag-processor has to parse the DAG first
        answer = deployment.session.get(f"{deployment.api}/api/v2/dags/{DAG_ID}", timeout=10)
        if answer.status_code == 200:
            break
        time.sleep(2)
    else:
        pytest.fail(f"{DAG_ID} was not parsed within {STARTUP_LIMIT:.0f} s:\n{deployment.tail()}")
    created = deployment.session.post(
        f"{deployment.api}/api/v2/dags/{DAG_ID}/dagRuns",
        json={"logical_date": None, "conf": {"destination": str(archive)}},
        timeout=10,
    )
    assert created.status_code in (200, 201), created.text
    run_id = created.json()["dag_run_id"]
    seen_lipsync_states: set[str] = set()
    deadline = time.monotonic() + RUN_LIMIT
    state = "queued"
    while time.monotonic() < deadline:
        state = deployment.get(f"/dags/{DAG_ID}/dagRuns/{run_id}")["state"]
        lipsync = deployment.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/lipsync")
        if lipsync.get("state"):
            seen_lipsync_states.add(lipsync["state"])
        if state in ("success", "failed"):
            break
        time.sleep(1)
    instances = deployment.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
    states = {ti["task_id"]: ti["state"] for ti in instances}
    assert state == "success", f"run {state}, tasks {states}\n{deployment.tail()}"
    assert "deferred" in seen_lipsync_states  # the real triggerer ran the trigger
    (job_id,) = scenario_emulator.store.jobs
    manifest = json.loads((archive / job_id / "manifest.json").read_text())
    video = Path(manifest["files"][0]["uri"].removeprefix("file://"))
    assert video.stat().st_size == manifest["files"][0]["size"]
    logs = json.dumps(deployment.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/lipsync/logs/1"))
    assert (
        f"Scenario job {job_id}: in-progress" in logs or f"Scenario job {job_id}: success (100%)" in logs
    ), logs[-3000:]
