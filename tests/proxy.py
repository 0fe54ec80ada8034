"""A real forward proxy on loopback: Debian's tinyproxy, started with a configuration of its own and stopped at
the end. Every request it forwards carries its ``Via`` header, which the emulator's request log keeps."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.deployments import free_port

VIA_NAME = "kling-test-proxy"


@contextlib.contextmanager
def tinyproxy(work: Path) -> Iterator[str]:
    """A tinyproxy on a free loopback port, allowing loopback clients only; yields its URL."""
    binary = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
    port = free_port()
    config = work / "tinyproxy.conf"
    config.write_text(
        "User nobody\nGroup nogroup\n"
        f"Port {port}\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\n"
        f'ViaProxyName "{VIA_NAME}"\nLogLevel Info\nMaxClients 50\n'
    )
    log = (work / "tinyproxy.log").open("w")
    process = subprocess.Popen([binary, "-d", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            assert process.poll() is None, (work / "tinyproxy.log").read_text()
            assert time.monotonic() < deadline, "tinyproxy did not listen"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)
        log.close()


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop tinyproxy, leaving nothing running.

    tinyproxy can miss a SIGTERM that lands just before it waits for a connection: it then waits on until the
    next signal or connection (seen once in CI: a proxy still running 8 minutes after its test, which a second
    SIGTERM ended at once). So the stop repeats the signal each second, and kills after 10 s.
    """
    for _ in range(10):
        process.terminate()
        try:
            process.wait(timeout=1)
            return
        except subprocess.TimeoutExpired:
            continue
    process.kill()
    process.wait(timeout=10)
