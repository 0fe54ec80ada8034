"""A StatsD listener on loopback (a UDP socket) that Airflow's metrics are pointed at, and what it read."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


@pytest.fixture
def statsd(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.2)
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(listener.getsockname()[1]))
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PREFIX", "airflow")
    try:
        yield listener
    finally:
        listener.close()


def received(listener: socket.socket) -> list[str]:
    lines: list[str] = []
    while True:
        try:
            data = listener.recv(65536)
        except TimeoutError:
            return lines
        lines += data.decode().splitlines()


def kling_metrics(lines: list[str]) -> dict[str, list[str]]:
    """``airflow.kling.*`` metrics by name, each with its values and types (``30|c``, ``1234.5|ms``)."""
    found: dict[str, list[str]] = {}
    for line in lines:
        name, _, value = line.partition(":")
        if name.startswith("airflow.kling."):
            found.setdefault(name.removeprefix("airflow."), []).append(value)
    return found
