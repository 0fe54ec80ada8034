"""The whole batch on a real Airflow.

N compliant clips through a team limited to k parallel jobs of T seconds, and how much of the team's paid
capacity sits idle between jobs.

Each contender runs on the same deployment (``airflow standalone``, or the distributed cluster of
``tests/cluster.py``: PostgreSQL, Redis, Celery, two triggerers) against one emulator, whose books (every
job's creation and end, every request) give the figures:

- **makespan / ideal**: the run's time over ``ceil(N / k) * T`` plus the first clip's time before its job
  (run start to first submission) and the last clip's after it (last job end to run end); each job takes
  T +- 10 % (the same durations, in the same order, for every contender; T is their mean), as real jobs
  vary and a poll must not line up with every end by chance;
- **slot utilization**: the time-integral of running jobs over ``k`` times the span from the first
  submission to the last job end;
- **hand-off**: from a job's end to the submission that took its slot (the (i+k)-th submission fills the
  slot the i-th ending freed), median, p95, max;
- requests per job (status polls, lookups, refused submissions, estimates) and the CPU seconds of the
  triggerer(s) and the scheduler during the run.

Contenders: the batch DAG with the pool at k (Airflow's practice: the ceiling is never met), the batch
DAG with the pool at N (every clip at once, relying on the ceiling wait and the slot hand-off), and the
official client in a plain ``@task`` with the pool at k (a worker slot held per job).

    python -m bench.batch --clips 24 --limit 4 --job-seconds 30,60 --deployments standalone,cluster
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import describe_machine, print_table

REPO = Path(__file__).parent.parent
SDK_DAG = Path(__file__).parent / "dags" / "kling_bench_sdk.py"
POOL = "kling_lipsync"


@dataclass(frozen=True)
class Contender:
    name: str
    dag_id: str
    pool_at_clips: bool  # the pool at N (else at k)


CONTENDERS = (
    Contender("batch DAG, pool = k", "kling_lipsync_batch", False),
    Contender("batch DAG, pool = N (ceiling wait)", "kling_lipsync_batch", True),
    Contender("official client @task, pool = k", "kling_bench_sdk", False),
)


@dataclass(frozen=True)
class Outcome:
    makespan: float
    ideal: float
    utilization: float
    handoffs: list[float]
    per_job: dict[str, float]
    cpu: dict[str, float]


def analyse(store: Any, limit: int, started: float, ended: float) -> Outcome:
    """The figures of one run from the emulator's books and the run's start and end (epoch seconds)."""
    jobs = sorted(store.jobs.values(), key=lambda job: job.created_at)
    created = [job.created_at for job in jobs]
    ends = sorted(job.ends_at for job in jobs)
    rounds = math.ceil(len(jobs) / limit)
    mean = statistics.mean(job.seconds for job in jobs)
    ideal = rounds * mean + (created[0] - started) + (ended - ends[-1])
    busy = sum(job.ends_at - job.created_at for job in jobs)
    span = ends[-1] - created[0]
    handoffs = [created[i + limit] - ends[i] for i in range(len(jobs) - limit)]
    requests = store.requests()
    polls = sum(1 for r in requests if r["method"] == "GET" and r["path"].startswith("/v1/jobs/job_"))
    lookups = sum(1 for r in requests if r["method"] == "GET" and r["path"] == "/v1/jobs")
    posts = [r for r in requests if r["method"] == "POST" and r["path"].startswith("/v1/generate/")]
    estimates = sum(1 for r in posts if "dryRun" in r["query"])
    per_job = {
        "polls": polls / len(jobs),
        "lookups": lookups / len(jobs),
        "refused": store.refused_submissions / len(jobs),
        "estimates": estimates / len(jobs),
    }
    return Outcome(ended - started, ideal, busy / (limit * span), handoffs, per_job, {})


def component_cpu() -> dict[str, float]:
    """CPU seconds (user + system) so far of every triggerer and scheduler process on this machine."""
    import psutil  # type: ignore[import-untyped]  # psutil ships no types; a bench-only import

    seconds: dict[str, float] = {"triggerer": 0.0, "scheduler": 0.0}
    for process in psutil.process_iter(["cmdline"]):
        line = " ".join(process.info["cmdline"] or [])
        if "airflow" not in line or "worker" in line:
            continue
        for part in seconds:
            if part in line:
                with contextlib.suppress(psutil.Error):
                    times = process.cpu_times()
                    seconds[part] += times.user + times.system
    return seconds


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def run_contender(
    deployment: Any, emulator: Any, contender: Contender, clips: Path, work: Path, args: argparse.Namespace
) -> Outcome:
    from airflow_kling.hooks.scenario import ScenarioHook

    slots = args.clips if contender.pool_at_clips else args.limit
    pool = {"name": POOL, "slots": slots, "include_deferred": True}
    answer = deployment.session.patch(f"{deployment.api}/api/v2/pools/{POOL}", json=pool, timeout=30)
    if answer.status_code == 404:
        answer = deployment.session.post(f"{deployment.api}/api/v2/pools", json=pool, timeout=30)
    answer.raise_for_status()
    if contender.dag_id == "kling_bench_sdk":  # uploads are not this contender's part: made beforehand
        hook = ScenarioHook()
        conf: dict[str, Any] = {"videos": [hook.upload_asset(path) for path in sorted(clips.glob("*.mp4"))]}
    else:
        shutil.rmtree(work, ignore_errors=True)
        conf = {"source": str(clips), "work": str(work / "work"), "destination": str(work / "archive")}
    emulator.store.reset()
    with emulator.store.lock:
        emulator.store.jobs.clear()
    durations = random.Random(7)  # the same jobs, in the same order, for every contender
    for _ in range(args.clips):  # T +- 10 %: real jobs vary, and a poll never lines up with their ends
        emulator.plan_jobs(seconds=args.seconds * durations.uniform(0.9, 1.1))
    cpu_before = component_cpu()
    run_id = deployment.trigger(contender.dag_id, conf)
    deadline = time.monotonic() + math.ceil(args.clips / args.limit) * args.seconds * 4 + 600
    while True:
        run = deployment.get(f"/dags/{contender.dag_id}/dagRuns/{run_id}")
        if run["state"] in ("success", "failed"):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{contender.name}: the run did not end in time")
        time.sleep(2)
    if run["state"] != "success":
        raise RuntimeError(
            f"{contender.name}: the run {run['state']}\n{deployment.logs_of(contender.dag_id)}"
        )
    cpu_after = component_cpu()
    started, ended = _epoch(run["start_date"]), _epoch(run["end_date"])
    if args.books:
        jobs = sorted(emulator.store.jobs.values(), key=lambda job: job.created_at)
        with Path(args.books).open("a") as books:
            record = {
                "contender": contender.name,
                "T": args.seconds,
                "run": [started, ended],
                "jobs": [[job.created_at - started, job.ends_at - started] for job in jobs],
            }
            books.write(json.dumps(record) + "\n")
    outcome = analyse(emulator.store, args.limit, started, ended)
    cpu = {part: cpu_after[part] - cpu_before[part] for part in cpu_after}
    return Outcome(
        outcome.makespan, outcome.ideal, outcome.utilization, outcome.handoffs, outcome.per_job, cpu
    )


@contextlib.contextmanager
def deployed(kind: str, emulator: Any, scratch: Path) -> Iterator[Any]:
    """A started deployment of ``kind`` with the example DAGs and the bench's, stopped at the end."""
    if kind == "standalone":
        from tests.deployments import standalone

        with standalone(scratch / "standalone", emulator.connection_uri(), dag_files=[SDK_DAG]) as running:
            yield running
    else:
        from tests.cluster import running_cluster

        dag_files = [*sorted((REPO / "dags").glob("*.py")), SDK_DAG]
        connections = {"AIRFLOW_CONN_SCENARIO_DEFAULT": emulator.connection_uri()}
        with running_cluster(dag_files, connections, "") as cluster:
            assert cluster.deployment is not None
            yield cluster.deployment


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=24, help="N, clips in the batch")
    parser.add_argument("--limit", type=int, default=4, help="k, the team's parallel jobs")
    parser.add_argument("--job-seconds", default="30,60", help="T, comma-separated")
    parser.add_argument("--deployments", default="standalone,cluster")
    parser.add_argument("--contenders", default=",".join(str(i) for i in range(len(CONTENDERS))))
    parser.add_argument(
        "--books", help="append each run's jobs (creation, end; seconds from its start) to this file"
    )
    args = parser.parse_args(argv)
    import signal
    import sys

    # A terminated bench stops what it started: its deployments stop in their context managers' exits.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from airflow_kling.emulator import run_emulator
    from airflow_kling.media.samples import make_video

    chosen = [CONTENDERS[int(i)] for i in args.contenders.split(",")]
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="kling-bench-batch-") as directory,
        run_emulator(team_job_limit=args.limit) as emulator,
    ):
        scratch = Path(directory)
        clips = scratch / "clips"
        clips.mkdir()
        sample = make_video(scratch / "face.mp4", width=1280, height=720, seconds=3, fps=10)
        for number in range(args.clips):  # compliant: preparing each is a copy, not an encode
            shutil.copy(sample, clips / f"clip-{number:02d}.mp4")
        import os

        os.environ["AIRFLOW_CONN_SCENARIO_DEFAULT"] = emulator.connection_uri()
        for kind in args.deployments.split(","):
            with deployed(kind, emulator, scratch / kind) as deployment:
                for seconds in (float(s) for s in args.job_seconds.split(",")):
                    emulator.store.config.job_seconds = args.seconds = seconds
                    for contender in chosen:
                        outcome = run_contender(deployment, emulator, contender, clips, scratch / "run", args)
                        rows.append(
                            [
                                kind,
                                f"{seconds:g} s",
                                contender.name,
                                f"{outcome.makespan:.0f} s",
                                f"{outcome.makespan / outcome.ideal:.2f}x",
                                f"{outcome.utilization:.2f}",
                                f"{statistics.median(outcome.handoffs):.1f} / "
                                f"{_percentile(outcome.handoffs, 0.95):.1f} / {max(outcome.handoffs):.1f} s",
                                " / ".join(f"{outcome.per_job[key]:.1f}" for key in outcome.per_job),
                                f"{outcome.cpu['triggerer']:.1f} / {outcome.cpu['scheduler']:.1f} s",
                            ]
                        )
                        print(" | ".join(rows[-1]), flush=True)
    print_table(
        f"A batch of {args.clips} clips, team limit {args.limit}, on {describe_machine()}",
        [
            "deployment",
            "T",
            "contender",
            "makespan",
            "/ ideal",
            "slot use",
            "hand-off median / p95 / max",
            "per job: polls / lookups / refused / estimates",
            "CPU triggerer / scheduler",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
