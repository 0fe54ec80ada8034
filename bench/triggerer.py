"""N Scenario job waits in one event loop, as a triggerer runs them.

This provider's ScenarioJobTrigger against polling built on the http provider (a client session per poll) and
against the floor (raw aiohttp with one shared session, nothing else), in the same run, against an emulator in
its own process (its CPU is reported apart, so that the provider's own cost is compared).

Per contender and N: CPU seconds per 1 000 polls, peak RSS of the loop's process, polls per job, the CPU per job
waited against the floor's (a contender that polls less pays less per job), and the delay from a job's success to
its event. Each run's jobs are submitted once its loop has started, so every contender meets them at the same age.

With ``--instructions`` (valgrind installed), each loop runs under callgrind instead and the bench reports the
instructions its waits execute per poll, with the garbage collector off: a count that repeats within 0.5 % on an
idle machine, where CPU time on a shared host spreads by 10-20 % and one full collection more or less moves a ratio
by 0.2. It counts neither the kernel's work nor memory stalls. Valgrind slows a loop many times over: give the jobs
time to be polled (``--jobs 200 --job-seconds 30``), and compare runs with the same polls per job (a loaded machine
gives fewer, and each poll then carries more of the per-job work).

With ``--contenders layers`` the provider's poll is also built up one layer at a time (our request sent by raw
aiohttp, the hook's send, ``get_job``, the job watch, what an event carries kept through the sleep), so that
each layer's share is read in the same concurrent loop, not counted alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench.common import describe_machine, median_spread, print_table, run_measured, split_cpus
from bench.trigger_loop import JOBS_WAIT_SECONDS, LAYERS, READY_SUFFIX

KEY, SECRET = "bench-key", "bench-secret"
CONTENDER_NAMES = {
    "floor": "floor (raw aiohttp, shared session)",
    "http": "http provider (session per poll)",
    "request": "+ our request (raw aiohttp)",
    "send": "+ the hook's send",
    "get_job": "+ get_job (the job's types)",
    "watch": "+ the job watch",
    "kept": "+ what an event carries, kept",
    "ours": "ScenarioJobTrigger",
}
"""Every contender, in the order of the table; ``--contenders`` picks some (the floor always runs). The ``+``
ones build the provider's poll up one layer at a time (``bench.trigger_loop.LAYERS``), each on the one above."""
DEFAULT_CONTENDERS = "floor,http,ours"


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def valgrind(counts: Path) -> list[str]:
    """The command prefix that runs a loop under callgrind, its counts written to ``counts``.<pid>."""
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={counts}.%p"]


def instructions(counts: Path) -> int:
    """The instructions callgrind counted in the files of one run (``totals:`` of each)."""
    total = 0
    for path in counts.parent.glob(f"{counts.name}.*"):
        for line in path.read_text().splitlines():
            if line.startswith("totals:"):
                total += int(line.split()[1])
    return total


class JobFeeder:
    """Submits a run's ``n`` jobs once its loop says it has started, and writes their ids where it reads them.

    So that every contender meets jobs of the same age, however long its start-up took (under valgrind, tens of
    seconds that vary from run to run: before, a late start meant fewer polls a job).
    """

    def __init__(
        self, session: requests.Session, base: str, video_id: str, n: int, jobs_file: Path, emulator_pid: int
    ) -> None:
        self.session, self.base, self.video_id, self.n = session, base, video_id, n
        self.jobs_file, self.emulator_pid = jobs_file, emulator_pid
        self.emulator_cpu = 0.0
        """The emulator's CPU seconds once the jobs were submitted (its share of the run is counted from here)."""

    def __call__(self) -> None:
        ready = Path(f"{self.jobs_file}{READY_SUFFIX}")
        deadline = time.monotonic() + JOBS_WAIT_SECONDS
        while not ready.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the loop did not start in {JOBS_WAIT_SECONDS:g} s")
            time.sleep(0.05)
        job_ids = [
            self.session.post(
                f"{self.base}/generate/custom/model_kling-lip-sync",
                json={"videoUrl": self.video_id, "text": "Hello from the benchmark"},
                timeout=30,
            ).json()["job"]["jobId"]
            for _ in range(self.n)
        ]
        requests.delete(f"{self.base.removesuffix('/v1')}/_emulator/requests", timeout=10)
        self.emulator_cpu = cpu_seconds(self.emulator_pid)
        written = Path(f"{self.jobs_file}.part")
        written.write_text(json.dumps(job_ids))
        written.rename(self.jobs_file)  # whole or not at all: the loop reads it once it exists


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", default="100,1000,5000", help="comma-separated N")
    parser.add_argument("--poll-interval", type=float, default=5.0)
    parser.add_argument("--job-seconds", type=float, default=15.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions per poll under callgrind, GC off"
    )
    parser.add_argument(
        "--contenders",
        default=DEFAULT_CONTENDERS,
        help=f"comma-separated, of {','.join(CONTENDER_NAMES)}; 'layers' for the floor, each layer and ours",
    )
    args = parser.parse_args(argv)
    wanted = ["floor", *LAYERS, "ours"] if args.contenders == "layers" else args.contenders.split(",")
    unknown = sorted(set(wanted) - set(CONTENDER_NAMES))
    if unknown:
        parser.error(f"unknown contenders {unknown}: choose among {', '.join(CONTENDER_NAMES)}")
    contenders = [name for name in CONTENDER_NAMES if name in wanted or name == "floor"]
    import socket

    from airflow_kling.media.samples import make_video

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}/v1"
    from airflow_kling.emulator import spawn_emulator

    emulator = spawn_emulator(port, api_key=KEY, api_secret=SECRET, job_seconds=args.job_seconds)
    cpus = split_cpus()
    if cpus:
        os.sched_setaffinity(emulator.pid, cpus[0])
    session = requests.Session()
    session.auth = (KEY, SECRET)
    env = {
        **os.environ,
        "AIRFLOW_CONN_SCENARIO_DEFAULT": json.dumps(
            {"conn_type": "scenario", "host": base, "login": KEY, "password": SECRET}
        ),
        "AIRFLOW_CONN_SCENARIO_HTTP": json.dumps(
            {"conn_type": "http", "host": base, "login": KEY, "password": SECRET}
        ),
    }
    rows: list[list[Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="kling-bench-triggers-") as directory:
            work = Path(directory)
            video = work / "face.mp4"
            make_video(video, width=1280, height=720, seconds=3, fps=10)
            env_hook = {**env}
            os.environ.update({"AIRFLOW_CONN_SCENARIO_DEFAULT": env_hook["AIRFLOW_CONN_SCENARIO_DEFAULT"]})
            from airflow_kling.hooks.scenario import ScenarioHook

            video_id = ScenarioHook().upload_asset(video)
            for n in [int(value) for value in args.jobs.split(",")]:
                # Round-robin, not one contender's runs in a row: a machine that drifts (a shared host, a
                # neighbour's load) shifts every contender alike, and the ratios stay comparable.
                for _ in range(args.repeat):
                    for contender in contenders:
                        jobs_file, result_file = work / "jobs.json", work / "result.json"
                        for stale in (jobs_file, Path(f"{jobs_file}{READY_SUFFIX}")):
                            stale.unlink(missing_ok=True)
                        feed = JobFeeder(session, base, video_id, n, jobs_file, emulator.pid)
                        counts = work / f"callgrind-{contender}-{len(rows)}"
                        measure = run_measured(
                            [
                                *(valgrind(counts) if args.instructions else []),
                                sys.executable,
                                "-m",
                                "bench.trigger_loop",
                                contender,
                                str(jobs_file),
                                str(args.poll_interval),
                                str(result_file),
                            ],
                            env={**env, "KLING_BENCH_INSTRUCTIONS": "1"} if args.instructions else env,
                            cpus=cpus[1] if cpus else None,
                            started=feed,
                        )
                        emulator_cpu = cpu_seconds(emulator.pid) - feed.emulator_cpu
                        result = json.loads(result_file.read_text())
                        log = requests.get(f"http://127.0.0.1:{port}/_emulator/requests", timeout=60).json()[
                            "requests"
                        ]
                        polls = sum(
                            1
                            for entry in log
                            if entry["method"] == "GET" and entry["path"].startswith("/v1/jobs/")
                        )
                        delays = result["delays"]
                        cost = (
                            instructions(counts) / polls
                            if args.instructions
                            else result["cpu"] / polls * 1000
                        )
                        rows.append(
                            [
                                n,
                                CONTENDER_NAMES[contender],
                                f"{cost / 1000:.1f} k" if args.instructions else f"{cost:.2f} s",
                                f"{result['gc_cpu'] / polls * 1000:.3f} s ({result['gc_counts'][2]} full)",
                                f"{measure.peak_mib:.0f} MiB",
                                f"{polls / n:.1f}",
                                f"{statistics.median(delays):.2f} s / {max(delays):.2f} s",
                                f"{emulator_cpu:.1f} s",
                                ",".join(result["statuses"]),
                                cost * polls / n,
                                cost,
                            ]
                        )
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
    order = list(CONTENDER_NAMES.values())
    rows.sort(key=lambda row: (row[0], order.index(row[1])))
    ratios: dict[tuple[int, str], list[float]] = {}
    job_ratios: dict[tuple[int, str], list[float]] = {}
    for row in rows:
        floors = [r for r in rows if r[0] == row[0] and r[1] == CONTENDER_NAMES["floor"]]
        floor_poll, floor_job = (
            statistics.median(r[-1] for r in floors),
            statistics.median(r[-2] for r in floors),
        )
        ratios.setdefault((row[0], row[1]), []).append(row[-1] / floor_poll)
        job_ratios.setdefault((row[0], row[1]), []).append(row[-2] / floor_job)
        row.insert(3, f"{row[-1] / floor_poll:.2f}x")
        row.insert(7, f"{row[-2] / floor_job:.2f}x")
    print_table(
        f"Triggerer load: N job waits in one event loop, poll every {args.poll_interval:g} s, jobs of "
        f"{args.job_seconds:g} s, on {describe_machine()}",
        [
            "N",
            "contender",
            "instructions per poll (GC off)" if args.instructions else "CPU per 1000 polls",
            "vs floor (this / floor)",
            "of which GC (full collections)",
            "peak RSS",
            "polls per job",
            "per job vs floor",
            "success -> event (median / max)",
            "emulator CPU",
            "events",
        ],
        [row[:-2] for row in rows],
    )
    measured = "Instructions" if args.instructions else "CPU"
    for unit, found in (("poll", ratios), ("job waited", job_ratios)):
        print(f"\n{measured} per {unit} against the floor's median, median of the runs (min-max):")
        for (n, name), values in found.items():
            middle, low, high = median_spread(values)
            print(f"- N={n}, {name}: {middle:.2f}x ({low:.2f}x-{high:.2f}x)")


if __name__ == "__main__":
    main()
