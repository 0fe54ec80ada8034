"""Run DAGs for real: ``airflow dags test`` in a process of its own, on the SQLite database of the tests'
AIRFLOW_HOME, with the test DAGs in its dags folder; the outcome is read back from that database.

A run's process is forked from :mod:`tests.dag_runner`, which has imported Airflow once, when the test's
environment is the session's (but for its connections); otherwise it is a new ``airflow`` process."""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_kling.version_compat import AIRFLOW_V_3_2_PLUS

TEST_DAGS = Path(__file__).parent / "dags"

if AIRFLOW_V_3_2_PLUS:
    from airflow.dag_processing.dagbag import DagBag
else:  # Airflow 3.1 keeps it with the models
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

__all__ = ["DagBag", "DagRunOutcome", "airflow_bin", "dags_test", "prepare_airflow_home"]


REPOSITORY = Path(__file__).parent.parent


def airflow_bin() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def prepare_airflow_home() -> Path:
    """Migrate the metadata database and serialize the test DAGs (once per test session)."""
    home = Path(os.environ["AIRFLOW_HOME"])
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    for dag_file in TEST_DAGS.glob("*.py"):
        shutil.copy(dag_file, dags / dag_file.name)
    for command in (["db", "migrate"], ["dags", "reserialize"]):
        subprocess.run([airflow_bin(), *command], check=True, capture_output=True, timeout=300)
    return home


@dataclass
class DagRunOutcome:
    returncode: int
    output: str
    run_id: str
    states: dict[str, str]
    tries: dict[str, int]
    return_values: dict[str, Any]
    mapped_states: dict[str, list[str]]
    """Each mapped task's states in map-index order."""
    forked: bool
    """The run was forked from :mod:`tests.dag_runner` (else a new ``airflow`` process: an environment of its own)."""

    def xcom(self, task_id: str, key: str) -> Any:
        """The value a task pushed under ``key`` (JSON-decoded), or ``None``."""
        with _db() as db:
            row = db.execute(
                "SELECT value FROM xcom WHERE run_id = ? AND task_id = ? AND key = ?",
                (self.run_id, task_id, key),
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def history(self, task_id: str) -> list[str]:
        """States of a task's earlier tries, oldest first."""
        with _db() as db:
            rows = db.execute(
                "SELECT state FROM task_instance_history WHERE run_id = ? AND task_id = ? ORDER BY try_number",
                (self.run_id, task_id),
            ).fetchall()
        return [row[0] for row in rows]


RUN_LIMIT = 300.0
"""Seconds a DAG run may take."""


PER_TEST = ("AIRFLOW_CONN_", "PYTEST_CURRENT_TEST")
"""What differs from one test's environment to the next without changing what a forked run imports: the
connections (each test's emulator) and the name of the running test, which pytest sets for each."""


def _shared_environment(env: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in env.items() if not key.startswith(PER_TEST)}


class _Forks:
    """The session's :mod:`tests.dag_runner`, started on first use and stopped when the session ends."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.env = _shared_environment(dict(os.environ))
        self.unread = b""

    def serves(self, env: dict[str, str]) -> bool:
        return _shared_environment(env) == self.env

    def run(self, argv: list[str], env: dict[str, str]) -> tuple[int, str]:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.dag_runner"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=REPOSITORY,
                env={**self.env, "PYTHONPATH": str(REPOSITORY)},
            )
            atexit.register(self.stop)
            self.unread = b""
        assert self.process.stdin is not None
        with tempfile.NamedTemporaryFile(prefix="dags-test-", suffix=".log", delete=False) as output:
            path = output.name
        try:
            self.process.stdin.write(json.dumps({"argv": argv, "env": env, "output": path}).encode() + b"\n")
            self.process.stdin.flush()
            pid = json.loads(self._answer(RUN_LIMIT))["pid"]
            try:
                code = json.loads(self._answer(RUN_LIMIT))["returncode"]
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                self._answer(30)
                raise
            return int(code), Path(path).read_text(errors="replace")
        finally:
            os.unlink(path)

    def _answer(self, limit: float) -> bytes:
        """The next line the runner wrote (read unbuffered: two answers may come in one read)."""
        assert self.process is not None
        assert self.process.stdout is not None
        while b"\n" not in self.unread:
            ready, _, _ = select.select([self.process.stdout], [], [], limit)
            if not ready:
                raise TimeoutError(f"no answer from tests.dag_runner within {limit:.0f} s")
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError("tests.dag_runner exited")
            self.unread += chunk
        line, self.unread = self.unread.split(b"\n", 1)
        return line

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_forks = _Forks()


def dags_test(dag_id: str, conf: dict[str, Any]) -> DagRunOutcome:
    """Run one DAG to its end with ``airflow dags test`` and read back each task's state and result."""
    argv = ["dags", "test", dag_id, "-c", json.dumps(conf)]
    env = dict(os.environ)
    forked = _forks.serves(env)
    if forked:
        returncode, output = _forks.run(argv, env)
    else:
        result = subprocess.run(  # `airflow dags test` as tests.dag_runner runs it, in a process of its own
            [sys.executable, "-m", "tests.dag_runner", "--once", *argv],
            capture_output=True,
            text=True,
            timeout=RUN_LIMIT,
            env={
                **env,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY), env.get("PYTHONPATH")])),
            },
            cwd=REPOSITORY,
        )
        returncode, output = result.returncode, result.stdout + result.stderr
    with _db() as db:
        (run_id,) = db.execute(  # the run this test made, not one that a task of it triggered
            "SELECT run_id FROM dag_run WHERE dag_id = ? AND run_type != 'operator_triggered' "
            "AND coalesce(triggered_by, '') != 'OPERATOR' ORDER BY id DESC LIMIT 1",
            (dag_id,),
        ).fetchone()
        rows = db.execute(
            "SELECT task_id, state, try_number, map_index FROM task_instance WHERE dag_id = ? AND run_id = ? "
            "ORDER BY task_id, map_index",
            (dag_id, run_id),
        ).fetchall()
        xcoms = db.execute(
            "SELECT task_id, value FROM xcom WHERE dag_id = ? AND run_id = ? AND key = 'return_value'",
            (dag_id, run_id),
        ).fetchall()
    return DagRunOutcome(
        returncode=returncode,
        output=output,
        run_id=run_id,
        forked=forked,
        states={task: state for task, state, _, _ in rows},
        tries={task: tries for task, _, tries, _ in rows},
        mapped_states={
            task: [state for other, state, _, index in rows if other == task and index >= 0]
            for task, _, _, index in rows
            if index >= 0
        },
        return_values={
            task: json.loads(value) if isinstance(value, str | bytes) else value for task, value in xcoms
        },
    )


def _db() -> sqlite3.Connection:
    return sqlite3.connect(Path(os.environ["AIRFLOW_HOME"]) / "airflow.db")
