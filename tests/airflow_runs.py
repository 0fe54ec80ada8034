"""Run DAGs for real: ``airflow dags test`` in a subprocess, on the SQLite database of the tests'
AIRFLOW_HOME, with the test DAGs in its dags folder; the outcome is read back from that database."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
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


def dags_test(dag_id: str, conf: dict[str, Any]) -> DagRunOutcome:
    """Run one DAG to its end with ``airflow dags test`` and read back each task's state and result."""
    result = subprocess.run(
        [airflow_bin(), "dags", "test", dag_id, "-c", json.dumps(conf)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    with _db() as db:
        (run_id,) = db.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
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
        returncode=result.returncode,
        output=result.stdout + result.stderr,
        run_id=run_id,
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
