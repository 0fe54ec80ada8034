"""Server processes the tests start on loopback and stop at the end: each in a process group of its own, so
that a stop reaches everything it started; PostgreSQL as a throw-away cluster of Debian's server."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

INITDB_OPTIONS = ("--auth=trust", "-E", "UTF8", "--no-sync")
POSTGRES_OPTIONS = tuple(
    arg
    for setting in ("fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=300")
    for arg in ("-c", setting)
)


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        pytest.fail("PostgreSQL is not installed: apt-get install -y postgresql (as .ci/run does)")
    return Path(found[-1]).parent


def _as_postgres_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as ``nobody``."""
    return ["runuser", "-u", "nobody", "--", *command] if os.geteuid() == 0 else command


@dataclass
class Component:
    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    stopped: bool = False
    """Stopped or killed on purpose: its end is no failure."""
    stop_signal: int = signal.SIGTERM

    def start(self) -> None:
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )

    def signal(self, number: int) -> None:
        """Send a signal to the component's whole process group (its forks and task processes too)."""
        self.stopped = True
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, number)

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None:
            return
        self.signal(self.stop_signal)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout)
        self.signal(signal.SIGKILL)  # whatever of the group is left, also when its leader is gone
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def running(self) -> bool:
        """Whether its process (the group's leader) has not ended."""
        return self.process is not None and self.process.poll() is None

    def restart(self) -> None:
        """Start it again after a kill: the same command, name and log (appended to)."""
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)
        self.start()
        self.stopped = False

    def alive(self, grace: float = 10.0) -> bool:
        """Whether any process of its group is still there after ``grace`` seconds (killed children take a
        moment to be reaped)."""
        if self.process is None:
            return False
        deadline = time.monotonic() + grace
        while True:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return False
            if time.monotonic() > deadline:
                return True
            time.sleep(0.2)

    def tail(self, limit: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-limit:] if self.log.exists() else ""


def start_postgres(root: Path, log: Path) -> tuple[Component, int]:
    """A started PostgreSQL (run as ``nobody`` when root) with its data under ``root``, its database
    ``airflow`` owned by ``airflow`` (trusted on loopback); returns it and its port. Stop it with
    ``Component.stop``."""
    from tests.deployments import free_port

    bin_dir = _postgres_bin()
    database = root / "postgres"
    database.mkdir(mode=0o700)
    if os.geteuid() == 0:
        root.chmod(0o755)
        shutil.chown(database, "nobody")
    initdb = subprocess.run(
        _as_postgres_user(
            [str(bin_dir / "initdb"), "-D", str(database / "data"), "-U", "airflow", *INITDB_OPTIONS]
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert initdb.returncode == 0, initdb.stdout + initdb.stderr
    port = free_port()
    postgres = Component(
        "postgres",
        _as_postgres_user(
            [
                *(str(bin_dir / "postgres"), "-D", str(database / "data"), "-p", str(port)),
                *("-h", "127.0.0.1", "-k", str(database), *POSTGRES_OPTIONS),
            ]
        ),
        dict(os.environ),
        log,
        stop_signal=signal.SIGINT,  # a fast shutdown: SIGTERM waits for every client to leave
    )
    postgres.start()
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(
            [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
        ).returncode:
            assert time.monotonic() < deadline, postgres.tail()
            time.sleep(0.3)
        created = subprocess.run(
            [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "airflow", "airflow"],
            capture_output=True,
            text=True,
        )
        assert created.returncode == 0, created.stderr
    except BaseException:
        postgres.stop()
        raise
    return postgres, port
