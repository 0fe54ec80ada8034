"""Run the emulator: in a background thread of the current process, or as a foreground server."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_kling.emulator.store import EmulatorConfig, Fault, FaultSource, Store

if TYPE_CHECKING:
    import ssl

    from airflow_kling.emulator.chaos import Chaos


class EmulatorServer:
    """A Scenario API emulator serving on loopback from a background thread.

    Use it as a context manager, or :func:`run_emulator`. Tests reach its state directly:
    ``server.store.requests(...)``, ``server.add_fault(...)``, ``server.plan_jobs(...)``.

    :param host: the address to bind; default ``127.0.0.1``.
    :param port: the port; default 0 (a free one).
    :param config: key, secret, job duration and URL lifetime (:class:`EmulatorConfig`).
    :param tls: serve https with this server-side context (its certificate, and the client certificates it
        asks for, if any); default none: plain http.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        config: EmulatorConfig | None = None,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.config = config or EmulatorConfig()
        self.tls = tls
        self._data_dir = Path(tempfile.mkdtemp(prefix="scenario-emulator-"))
        self.store = Store(self.config, self._data_dir)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = asyncio.Event()

    @property
    def origin(self) -> str:
        """``scheme://host:port`` of the API."""
        return f"{'https' if self.tls is not None else 'http'}://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API base URL, including ``/v1``."""
        return f"{self.origin}/v1"

    def connection_uri(self) -> str:
        """An ``AIRFLOW_CONN_...`` value (JSON) for a ``scenario`` connection to this emulator."""
        import json

        return json.dumps(
            {
                "conn_type": "scenario",
                "host": self.base_url,
                "login": self.config.api_key,
                "password": self.config.api_secret,
                "extra": {"web_url": self.origin},
            }
        )

    def add_fault(self, path: str, **options: Any) -> None:
        """Inject a fault; see :class:`~airflow_kling.emulator.store.Fault` for the options."""
        self.store.add_fault(Fault(path=path, **options))

    def start_chaos(self, seed: int, **options: Any) -> Chaos:
        """Turn chaos mode on (random faults on every route, drawn from ``seed``).

        ``options``: ``rate``, ``max_in_a_row``, ``routes`` of :class:`~airflow_kling.emulator.chaos.Chaos`.
        Its ``injected`` counts what it did; ``store.reset()`` turns it off.
        """
        from airflow_kling.emulator.chaos import Chaos

        chaos = Chaos(seed=seed, **options)
        self.store.chaos = chaos
        return chaos

    def plan_jobs(self, outcome: str = "success", count: int = 1, **details: Any) -> None:
        """Make the next jobs end in ``outcome``; ``details``: ``error``, ``hint``, ``seconds``."""
        self.store.plan_jobs(outcome, count, **details)

    def describe_model(self, model_id: str, **inputs: dict[str, Any]) -> None:
        """Serve (and check against) another descriptor for ``model_id``.

        Each keyword names an input and the descriptor fields that replace the spec's, e.g.
        ``voiceId={"allowedValues": ["en_AOT"]}``.
        """
        with self.store.lock:
            self.store.model_overrides[model_id] = {name: dict(fields) for name, fields in inputs.items()}

    def start(self) -> EmulatorServer:
        """Start serving in a thread of its own; returns once it listens (30 s at most)."""
        started = threading.Event()
        errors: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(started))
            except BaseException as exc:  # surfaced to the thread that called start()
                errors.append(exc)
                started.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=serve, name="scenario-emulator", daemon=True)
        self._thread.start()
        started.wait(timeout=30)
        if errors:
            raise RuntimeError(f"The Scenario emulator did not start: {errors[0]!r}") from errors[0]
        return self

    async def _serve(self, started: threading.Event) -> None:
        from aiohttp import web

        from airflow_kling.emulator.app import create_app

        self._stopped = asyncio.Event()
        runner = web.AppRunner(
            create_app(self.store), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, ssl_context=self.tls)
        await site.start()
        self.port = int(runner.addresses[0][1])
        started.set()
        try:
            await self._stopped.wait()
        finally:
            await runner.cleanup()

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout=30)
        self.store.close()
        shutil.rmtree(self._data_dir, ignore_errors=True)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextmanager
def run_emulator(host: str = "127.0.0.1", port: int = 0, **config: Any) -> Iterator[EmulatorServer]:
    """Start an emulator for the duration of a ``with`` block; ``config``: :class:`EmulatorConfig` fields.

    >>> with run_emulator(job_seconds=1) as emulator:
    ...     print(emulator.base_url)  # doctest: +SKIP
    """
    with EmulatorServer(host, port, EmulatorConfig(**config)) as server:
        yield server


def serve_forever(host: str, port: int, config: EmulatorConfig, *, chaos: FaultSource | None = None) -> None:
    """Serve in the foreground until interrupted (the ``python -m airflow_kling.emulator`` command).

    ``chaos``: random faults from the start (see :mod:`airflow_kling.emulator.chaos`).
    """
    from aiohttp import web

    from airflow_kling.emulator.app import create_app

    data_dir = Path(tempfile.mkdtemp(prefix="scenario-emulator-"))
    store = Store(config, data_dir)
    store.chaos = chaos
    try:
        print(f"Scenario API emulator on http://{host}:{port}/v1 (key {config.api_key!r})", flush=True)
        web.run_app(create_app(store), host=host, port=port, access_log=None, print=None)
    finally:
        store.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def spawn_emulator(
    port: int, *, host: str = "127.0.0.1", wait: float = 30.0, **options: Any
) -> subprocess.Popen[bytes]:
    """Start ``python -m airflow_kling.emulator`` as a child process and wait until it answers.

    :param options: command-line options by their Python names, e.g. ``api_key="k"``, ``job_seconds=15``.
    :raises RuntimeError: it did not answer within ``wait`` seconds.
    """
    import sys
    import time
    import urllib.request

    command = [sys.executable, "-m", "airflow_kling.emulator", "--host", host, "--port", str(port)]
    for name, value in options.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/_emulator/health", timeout=1):
                return process
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"The emulator command did not answer on port {port} within {wait:.0f} s")
