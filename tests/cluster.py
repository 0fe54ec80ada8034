"""A distributed Airflow on loopback, from real parts: PostgreSQL (a throw-away cluster of Debian's server, run
as a non-root user) as the metadata database, Redis as the Celery broker, and the Airflow components each in a
process group of its own: scheduler, dag-processor, api-server, two triggerers and two Celery workers.

The control components share one ``AIRFLOW_HOME``; each worker has a home of its own, so that no local file
passes from one worker to the other. Each process names itself through ``[core] hostname_callable`` (the
task instances' ``hostname`` says which worker ran them) and listens on a queue of its own besides
``default`` (an ``airflow_local_settings`` policy pins given tasks to given workers).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.components import Component, start_postgres
from tests.deployments import RUN_LIMIT, STARTUP_LIMIT, Deployment, free_port

REPO = Path(__file__).parent.parent
HOSTNAME_VARIABLE = "KLING_TEST_HOSTNAME"
JWT_SECRET = "kling-cluster-test-jwt-secret-0123456789abcdef"
REDIS_OPTIONS = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
FERNET_KEY = "Lx7LIJdxP2m9pUxi9XA1e_b5DbWFKVVZk8r8Yu3xTWs="


def process_hostname() -> str:
    """``[core] hostname_callable`` of the cluster's processes: the name the test gave each one."""
    return os.environ.get(HOSTNAME_VARIABLE) or "unnamed"


@dataclass
class Cluster:
    root: Path
    connections: Mapping[str, str]
    components: dict[str, Component] = field(default_factory=dict)
    pg_port: int = 0
    redis_port: int = 0
    api_port: int = 0
    deployment: Deployment | None = None

    # -- the parts --------------------------------------------------------------------------------------------

    @property
    def control_home(self) -> Path:
        return self.root / "control"

    @property
    def dags(self) -> Path:
        return self.root / "dags"

    def home_of(self, name: str) -> Path:
        return self.control_home if not name.startswith("worker") else self.root / name

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        import psycopg2

        with (
            contextlib.closing(
                psycopg2.connect(host="127.0.0.1", port=self.pg_port, user="airflow", dbname="airflow")
            ) as db,
            db.cursor() as cursor,
        ):
            cursor.execute(query, args)
            return list(cursor.fetchall()) if cursor.description else []

    def env(self, name: str) -> dict[str, str]:
        home = self.home_of(name)
        # Temporary files under the cluster's root, removed with it: a Celery worker's pool leaves its
        # multiprocessing directory (/tmp/pymp-*) behind when it is stopped or killed.
        scratch = self.root / "tmp"
        scratch.mkdir(parents=True, exist_ok=True)
        database = f"postgresql+psycopg2://airflow@127.0.0.1:{self.pg_port}/airflow"
        bin_dir = str(Path(sys.executable).parent)
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))},
            **self.connections,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join([str(REPO), str(self.control_home / "config")]),
            HOSTNAME_VARIABLE: name,
            "TMPDIR": str(scratch),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.cluster.process_hostname",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__FERNET_KEY": FERNET_KEY,
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "5",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://airflow@127.0.0.1:{self.pg_port}/airflow",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "6",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API_AUTH__JWT_SECRET": JWT_SECRET,
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            # A dead worker's task is noticed after 20 s (default 300), a dead triggerer's triggers are
            # handed over after 10 s (default 30): the same mechanisms, sooner.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
            # A task a SIGKILLed Celery worker had taken but not started stays queued (its message is
            # unacknowledged until Redis's visibility timeout, 6 h): Airflow queues it again after 90 s
            # (default 600), checked every 10 s (default 120).
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "90",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        }

    def add(self, name: str, *arguments: str) -> Component:
        command = [str(Path(sys.executable).parent / "airflow"), *arguments]
        component = Component(name, command, self.env(name), self.root / "logs" / f"{name}.log")
        self.components[name] = component
        component.start()
        return component

    def start_worker(self, name: str) -> Component:
        self.home_of(name).mkdir(parents=True, exist_ok=True)
        return self.add(
            name, "celery", "worker", "--queues", f"default,{name}", "--celery-hostname", f"{name}@%h"
        )

    def start_triggerer(self, name: str) -> Component:
        return self.add(name, "triggerer")

    # -- start and stop ---------------------------------------------------------------------------------------

    def start(self) -> Deployment:
        (self.root / "logs").mkdir(parents=True)
        self._start_postgres()
        self._start_redis()
        self.api_port = free_port()
        self.control_home.mkdir(parents=True, exist_ok=True)
        (self.control_home / "simple_auth_manager_passwords.json.generated").write_text(
            json.dumps({"admin": "admin"})
        )
        migrate = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
            env=self.env("control"),
            capture_output=True,
            text=True,
            timeout=STARTUP_LIMIT,
        )
        assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
        pool = subprocess.run(
            [
                str(Path(sys.executable).parent / "airflow"),
                *("pools", "set", "kling_lipsync", "8", "Scenario parallel jobs", "--include-deferred"),
            ],
            env=self.env("control"),
            capture_output=True,
            text=True,
            timeout=STARTUP_LIMIT,
        )
        assert pool.returncode == 0, pool.stderr[-3000:]
        self.add("api-server", "api-server")
        self.add("scheduler", "scheduler")
        self.add("dag-processor", "dag-processor")
        self.start_triggerer("triggerer-1")
        self.start_triggerer("triggerer-2")
        self.start_worker("worker-1")
        self.start_worker("worker-2")
        self.deployment = ClusterDeployment(self)
        self.deployment.login()
        return self.deployment

    def _start_postgres(self) -> None:
        self.components["postgres"], self.pg_port = start_postgres(
            self.root, self.root / "logs" / "postgres.log"
        )

    def _start_redis(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            pytest.fail("Redis is not installed: apt-get install -y redis-server (as .ci/run does)")
        self.redis_port = free_port()
        redis = Component(
            "redis",
            [server, "--port", str(self.redis_port), "--dir", str(self.root), *REDIS_OPTIONS],
            dict(os.environ),
            self.root / "logs" / "redis.log",
        )
        self.components["redis"] = redis
        redis.start()

    def stop(self) -> list[str]:
        """Stop every component, Airflow's first and the databases last; returns those of which a process
        is still alive afterwards (none, or it is a bug)."""
        last = ("redis", "postgres")
        for name in [*(n for n in self.components if n not in last), *last]:
            if name in self.components:
                self.components[name].stop()
        return [name for name, component in self.components.items() if component.alive()]

    def check_running(self) -> None:
        """Fail, with the logs, when a component ended that nobody stopped."""
        ended = [
            name
            for name, component in self.components.items()
            if not component.stopped
            and component.process is not None
            and component.process.poll() is not None
        ]
        if ended:
            pytest.fail(f"{', '.join(ended)} ended by itself\n{self.logs()}")

    # -- what Airflow's database says ---------------------------------------------------------------------------

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        rows = self.sql(
            "SELECT task_id, map_index, state, hostname, try_number FROM task_instance "
            "WHERE dag_id = %s AND run_id = %s ORDER BY task_id, map_index",
            dag_id,
            run_id,
        )
        return [
            dict(zip(("task_id", "map_index", "state", "hostname", "try_number"), row, strict=True))
            for row in rows
        ]

    def run_state(self, dag_id: str, run_id: str) -> str:
        ((state,),) = self.sql("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", dag_id, run_id)
        return str(state)

    def wait_for_run(self, dag_id: str, run_id: str, limit: float = RUN_LIMIT) -> str:
        """The run's final state (``success`` or ``failed``); fails when it does not end within ``limit``
        seconds or a component ends that nobody stopped."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in ("success", "failed"):
                return state
            self.check_running()
            time.sleep(1)
        pytest.fail(f"{dag_id} {run_id} did not end within {limit:.0f} s\n{self.logs()}")

    def triggers_by_triggerer(self) -> dict[str, int]:
        """How many triggers each triggerer (by process name) holds now."""
        rows = self.sql(
            "SELECT job.hostname, count(*) FROM trigger JOIN job ON job.id = trigger.triggerer_id "
            "GROUP BY job.hostname"
        )
        return {str(host): int(count) for host, count in rows}

    def triggerer_beating(self, name: str) -> bool:
        """Whether triggerer ``name`` wrote its heartbeat into the database in the last 3 seconds."""
        rows = self.sql(
            "SELECT count(*) FROM job WHERE hostname = %s AND job_type = 'TriggererJob' "
            "AND latest_heartbeat > now() - interval '3 seconds'",
            name,
        )
        return bool(rows[0][0])

    def wait_until(self, what: str, check: Callable[[], Any], limit: float = 120.0) -> Any:
        """``check()``'s first true value, asked every half second; fails after ``limit`` seconds."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            self.check_running()
            time.sleep(0.5)
        pytest.fail(f"{what} did not happen within {limit:.0f} s\n{self.logs()}")

    def logs(self, limit: int = 2500, dag_id: str = "*", task_id: str = "*") -> str:
        """The end of every component's output and of the task logs (of ``dag_id``'s ``task_id``, globs; default
        all), for failure messages."""
        parts = [f"== {name}\n{component.tail(limit)}" for name, component in self.components.items()]
        for path in sorted(self.root.glob(f"*/logs/dag_id={dag_id}/*/task_id={task_id}/**/*.log")):
            parts.append(f"== {path.relative_to(self.root)}\n{path.read_text(errors='replace')[-limit:]}")
        return "\n".join(parts)


class ClusterDeployment(Deployment):
    def __init__(self, cluster: Cluster) -> None:
        super().__init__(
            f"http://127.0.0.1:{cluster.api_port}",
            cluster.control_home,
            cluster.root / "logs",
            database=f"host=127.0.0.1 port={cluster.pg_port} user=airflow dbname=airflow",
        )
        self.cluster = cluster

    def tail(self) -> str:
        return self.cluster.logs()

    def logs_of(self, dag_id: str, limit: int = 4000, task_id: str = "*") -> str:
        return self.cluster.logs(limit, dag_id, task_id)


@contextlib.contextmanager
def running_cluster(dag_files: list[Path], connections: Mapping[str, str], policy: str) -> Iterator[Cluster]:
    """A started cluster with ``dag_files`` in its DAG folder and ``policy`` as its
    ``airflow_local_settings.py``; stopped at the end, also on failure."""
    root = Path(tempfile.mkdtemp(prefix="kling-cluster-"))
    cluster = Cluster(root, connections)
    cluster.dags.mkdir(parents=True)
    for dag_file in dag_files:
        shutil.copy(dag_file, cluster.dags / dag_file.name)
    (cluster.control_home / "config").mkdir(parents=True)
    (cluster.control_home / "config" / "airflow_local_settings.py").write_text(policy)
    try:
        cluster.start()
        yield cluster
    finally:
        left = cluster.stop()
        if os.environ.get("KLING_KEEP_CLUSTER") is None:
            shutil.rmtree(root, ignore_errors=True)
    assert left == [], f"still running after the cluster stopped: {left}"
