"""What every benchmark shares.

The machine's description, child processes measured for time and peak memory, medians with their spread, and
the printed table.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Measure:
    """One run of a child process: wall seconds, CPU seconds (user + system) and peak RSS in MiB."""

    wall: float
    cpu: float
    peak_mib: float


def run_measured(
    command: Sequence[str],
    env: dict[str, str] | None = None,
    cpus: set[int] | None = None,
    started: Callable[[], None] | None = None,
) -> Measure:
    """Run a command to its end and measure it alone, on the CPUs in ``cpus`` if given.

    A contender and the server it talks to, each on a core of its own, do not take turns on one: the spread
    between runs shrinks.

    Peak RSS is the child's own ``VmHWM``, read from ``/proc`` while it runs: the ``ru_maxrss`` that
    ``wait4`` reports starts from the parent's RSS at fork, which would credit the child with the parent's
    memory.

    :param started: called once the command runs (its wall time counted), e.g. to feed it work when it is ready.
    """
    began = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if cpus:
        os.sched_setaffinity(process.pid, cpus)
    if started is not None:
        try:
            started()
        except BaseException:
            process.kill()
            process.wait()
            raise
    peak_kib = 0
    while True:
        peak_kib = max(peak_kib, _high_water_kib(process.pid))
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.005)
    wall = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
        raise RuntimeError(f"{command[0]} failed: {stderr[-2000:]}")
    return Measure(wall, usage.ru_utime + usage.ru_stime, peak_kib / 1024)


def _high_water_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def split_cpus() -> tuple[set[int], set[int]] | None:
    """Two disjoint sets of this process's CPUs (server, contender), or ``None`` on a single core."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    half = len(cpus) // 2
    return set(cpus[:half]), set(cpus[half:])


def median_spread(values: Sequence[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def describe_machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()} {platform.release()}"


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    print(f"\n## {title}\n")
    print("| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=False)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)) + " |")
    sys.stdout.flush()
