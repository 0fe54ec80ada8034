"""A soak that checks a ledger: the batch DAG over many clips on the distributed deployment of
:mod:`tests.cluster` (Celery, two triggerers, PostgreSQL, Redis, S3 on moto), under the emulator's chaos
(random API faults, seeded) *and* process faults at random moments drawn from the same seed: SIGKILL of the
Celery worker that has just submitted a job, SIGKILL of the triggerer holding the most triggers, and
SIGSTOP/SIGCONT of one until the other triggerer took its triggers over. The team's job limit is below the
pool, so clips also wait for a slot.

At the end, per clip: exactly one paid job, its output archived byte for byte (SHA-256 against the emulator's
asset), no cancel of any job (nobody ended a task), and no signed URL or secret in any log of any
component. It prints the seed, the faults and kills it injected, and the ledger; it exits 1 on any
discrepancy. ``make soak`` runs it; a failing seed replays its draws with ``--seed`` (the API faults come
in the same order on each route; the moments of the kills, in submissions, are the same).

    make soak                                  # 24 clips, a new seed
    make soak SOAK="--seed 1234 --clips 40"    # the draws of seed 1234
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import logging
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_kling.emulator import EmulatorServer
from tests.cluster import Cluster, Component
from tests.s3 import keys, put_clips

DAG_ID = "kling_lipsync_batch"
WORKERS = ("worker-1", "worker-2")
HANDOVER_LIMIT = 120.0
"""Seconds a triggerer may take to take over a lost one's triggers (the cluster's threshold is 10 s)."""
STALL_AT_LEAST = 15.0
"""Seconds a stalled triggerer stays stopped at least: past the cluster's health threshold (10 s), so that
its triggers are handed over and it finds them gone when it comes back (on Airflow 3.3 it calls their
``on_kill``)."""


@dataclass(frozen=True)
class SoakPlan:
    """What one soak does.

    :param seed: draws the API faults and when and what the process faults hit.
    :param clips: clips in the batch.
    :param job_seconds: how long each job runs on the emulator.
    :param chaos_rate: chance that an API request meets a fault (0 to 1).
    :param team_limit: the team's parallel jobs (the cluster's pool has 8 slots).
    :param worker_kills: SIGKILLs of the worker that has just submitted a job.
    :param triggerer_kills: SIGKILLs of the triggerer holding the most triggers.
    :param triggerer_stalls: SIGSTOPs of it until the other holds its triggers, then SIGCONT.
    """

    seed: int
    clips: int = 24
    job_seconds: float = 20.0
    chaos_rate: float = 0.2
    team_limit: int = 3
    worker_kills: int = 2
    triggerer_kills: int = 1
    triggerer_stalls: int = 1

    def process_faults(self) -> list[tuple[int, str]]:
        """``(n, kind)``: inject ``kind`` right after the n-th job was submitted; drawn from the seed."""
        kinds = (
            ["kill-worker"] * self.worker_kills
            + ["kill-triggerer"] * self.triggerer_kills
            + ["stall-triggerer"] * self.triggerer_stalls
        )
        draw = random.Random(f"process-faults-{self.seed}")
        if len(kinds) > self.clips:
            raise ValueError(f"{len(kinds)} process faults need at least as many clips, not {self.clips}")
        draw.shuffle(kinds)
        return list(zip(sorted(draw.sample(range(1, self.clips + 1), len(kinds))), kinds, strict=True))


@dataclass
class Ledger:
    plan: SoakPlan
    state: str = ""
    seconds: float = 0.0
    injected: list[str] = field(default_factory=list)
    """The process faults, in order, each with when it happened."""
    chaos: dict[str, Any] = field(default_factory=dict)
    clips: list[dict[str, Any]] = field(default_factory=list)
    peak_jobs: int = 0
    refused: int = 0
    problems: list[str] = field(default_factory=list)

    def render(self) -> str:
        plan = self.plan
        lines = [
            f"soak seed {plan.seed}: {plan.clips} clips, jobs of {plan.job_seconds:g} s, chaos rate "
            f"{plan.chaos_rate:g}, team limit {plan.team_limit}; the run {self.state} in {self.seconds:.0f} s",
            f"API faults injected: {self.chaos.get('injected', 0)}",
            *(f"  {what}: {count}" for what, count in self.chaos.get("by_route", {}).items()),
            f"process faults injected: {len(self.injected)}",
            *(f"  {what}" for what in self.injected),
            f"jobs running at once, at most: {self.peak_jobs} (limit {plan.team_limit}); submissions "
            f"refused at the ceiling: {self.refused}",
            "ledger (clip: paid jobs, archived output, lipsync tries):",
            *(
                f"  {row['clip']}: {row['jobs']} job(s) {' '.join(row['job_ids'])}, "
                f"{row['archived']}, {row['tries']} tr{'y' if row['tries'] == 1 else 'ies'}"
                for row in self.clips
            ),
            "verdict: "
            + ("every clip paid once and archived intact" if not self.problems else "DISCREPANCIES"),
            *(f"  {problem}" for problem in self.problems),
        ]
        if self.problems:
            lines.append(f'replay: make soak SOAK="{plan_arguments(plan)}"')
        return "\n".join(lines)


def plan_arguments(plan: SoakPlan) -> str:
    return (
        f"--seed {plan.seed} --clips {plan.clips} --job-seconds {plan.job_seconds:g} --chaos-rate "
        f"{plan.chaos_rate:g} --team-limit {plan.team_limit} --worker-kills {plan.worker_kills} "
        f"--triggerer-kills {plan.triggerer_kills} --triggerer-stalls {plan.triggerer_stalls}"
    )


class Nemesis:
    """Injects the plan's process faults into the cluster as the batch's jobs are submitted."""

    def __init__(self, cluster: Cluster, emulator: EmulatorServer, plan: SoakPlan, run_id: str) -> None:
        self.cluster, self.emulator, self.run_id = cluster, emulator, run_id
        self.pending = plan.process_faults()
        self.draw = random.Random(f"targets-{plan.seed}")
        self.started = time.monotonic()
        self.injected: list[str] = []

    def step(self) -> None:
        """Inject what is due: the faults whose submission has been made."""
        while self.pending and len(self.emulator.store.jobs) >= self.pending[0][0]:
            after, kind = self.pending.pop(0)
            what = getattr(self, kind.replace("-", "_"))()
            self.injected.append(f"{time.monotonic() - self.started:5.0f} s, after job {after}: {what}")

    def kill_worker(self) -> str:
        running = self.cluster.sql(
            "SELECT hostname FROM task_instance WHERE dag_id = %s AND run_id = %s AND state = 'running' "
            "AND task_id = 'clip.lipsync'",
            DAG_ID,
            self.run_id,
        )
        submitting = sorted({str(host) for (host,) in running if str(host) in WORKERS})
        name = self.draw.choice(submitting or list(WORKERS))
        worker = self.cluster.components[name]
        worker.signal(signal.SIGKILL)
        pause = self.draw.uniform(2.0, 8.0)
        time.sleep(pause)
        worker.restart()
        held = sum(host == name for (host,) in running)
        return f"SIGKILL {name} ({held} lipsync running there), back after {pause:.0f} s"

    def _holder(self) -> tuple[str, int] | None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            held = self.cluster.triggers_by_triggerer()
            if held:
                return max(sorted(held.items()), key=lambda item: item[1])
            time.sleep(0.5)
        return None

    def _taken_over(self, lost: str) -> None:
        self.cluster.wait_until(
            f"the triggers of {lost} taken over (or ended)",
            lambda: lost not in self.cluster.triggers_by_triggerer(),
            HANDOVER_LIMIT,
        )

    def _signal_holder(self, number: int) -> tuple[str, int, Component] | None:
        """Send ``number`` to the triggerer holding the most triggers: its name, their count, itself."""
        holder = self._holder()
        if holder is None:
            return None
        name, count = holder
        triggerer = self.cluster.components[name]
        triggerer.signal(number)
        return name, count, triggerer

    def kill_triggerer(self) -> str:
        signalled = self._signal_holder(signal.SIGKILL)
        if signalled is None:
            return "no triggerer held a trigger for 60 s: no SIGKILL"
        name, count, triggerer = signalled
        self._taken_over(name)
        triggerer.restart()
        return f"SIGKILL {name} holding {count} trigger(s); taken over or ended, then started again"

    def stall_triggerer(self) -> str:
        stalled = time.monotonic()
        signalled = self._signal_holder(signal.SIGSTOP)
        if signalled is None:
            return "no triggerer held a trigger for 60 s: no SIGSTOP"
        name, count, triggerer = signalled
        self._taken_over(name)
        time.sleep(max(0.0, stalled + STALL_AT_LEAST - time.monotonic()))
        triggerer.signal(signal.SIGCONT)
        seconds = time.monotonic() - stalled
        self.cluster.wait_until(
            f"{name} back at work or ended by itself",
            lambda: not triggerer.running() or self.cluster.triggerer_beating(name),
        )
        if not triggerer.running():
            triggerer.restart()
            return f"SIGSTOP {name} holding {count} trigger(s) for {seconds:.0f} s; it ended, started again"
        triggerer.stopped = False
        return f"SIGSTOP {name} holding {count} trigger(s) for {seconds:.0f} s, then SIGCONT"


def leaked_secrets(root: Path, emulator: EmulatorServer) -> list[str]:
    """Log files under ``root`` (any component's or task's, PostgreSQL's aside) that hold a signed URL's
    signature, the API secret or the Basic auth header's value: ``<file>: <what>``, never the value itself."""
    config = emulator.config
    basic = base64.b64encode(f"{config.api_key}:{config.api_secret}".encode()).decode()
    secrets = {
        "a signed URL": "signature=",
        "an S3 presigned URL": "X-Amz-Signature",
        "the API secret": config.api_secret,
        "the Basic auth header": basic,
    }
    found = []
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if not path.is_file() or "logs" not in parts or "postgres" in parts:
            continue
        text = path.read_text(errors="replace")
        found += [f"{path.relative_to(root)}: {name}" for name, value in secrets.items() if value in text]
    return found


def peak_running(emulator: EmulatorServer) -> int:
    events = []
    for job in emulator.store.jobs.values():
        events += [(job.created_at, 1), (job.ends_at, -1)]
    running = peak = 0
    for _, step in sorted(events):
        running += step
        peak = max(peak, running)
    return peak


def run_soak(
    cluster: Cluster, emulator: EmulatorServer, s3: Any, bucket: str, plan: SoakPlan, prefix: str
) -> Ledger:
    """Run one soak on a started cluster whose scenario connection is ``emulator`` and whose S3 is ``s3``
    (with ``bucket``), under ``prefix`` of the bucket; the ledger says what happened. The emulator's books
    are emptied first; its chaos and team limit are off again at the end."""
    assert cluster.deployment is not None
    ledger = Ledger(plan)
    names = [f"clip-{number:02d}" for number in range(plan.clips)]
    put_clips(s3, bucket, f"{prefix}/clips", names)
    store = emulator.store
    store.reset()
    with store.lock:
        store.jobs.clear()
    store.config.job_seconds = plan.job_seconds
    store.config.team_job_limit = plan.team_limit
    # Besides the random faults: the first submission's answer is lost after its job was created.
    emulator.add_fault("^/v1/generate/", method="POST", status=502, after=True)
    chaos = emulator.start_chaos(plan.seed, rate=plan.chaos_rate)
    started = time.monotonic()
    nemesis: Nemesis | None = None
    state = "not triggered"
    try:
        run_id = cluster.deployment.trigger(
            DAG_ID,
            {
                "source": f"s3://{bucket}/{prefix}/clips",
                "work": f"s3://{bucket}/{prefix}/work",
                "destination": f"s3://{bucket}/{prefix}/archive",
            },
        )
        nemesis = Nemesis(cluster, emulator, plan, run_id)
        limit = started + 600 + 6 * plan.job_seconds * plan.clips / plan.team_limit
        while (state := cluster.run_state(DAG_ID, run_id)) not in ("success", "failed"):
            if time.monotonic() > limit:
                state = f"did not end within {limit - started:.0f} s"
                break
            nemesis.step()
            cluster.check_running()
            time.sleep(0.5)
    finally:
        ledger.chaos = chaos.report()
        store.chaos = None
        store.config.team_job_limit = None
    ledger.state, ledger.seconds = state, time.monotonic() - started
    if nemesis is not None:
        ledger.injected = nemesis.injected + [
            f"not injected: after job {n}: {kind}" for n, kind in nemesis.pending
        ]
    ledger.peak_jobs, ledger.refused = peak_running(emulator), store.refused_submissions
    _check(ledger, cluster, emulator, s3, bucket, prefix, names, run_id)
    return ledger


def _check(
    ledger: Ledger,
    cluster: Cluster,
    emulator: EmulatorServer,
    s3: Any,
    bucket: str,
    prefix: str,
    names: list[str],
    run_id: str,
) -> None:
    store = emulator.store
    problems = ledger.problems
    if ledger.state != "success":
        problems.append(f"the run: {ledger.state}")
    by_clip: dict[str, list[Any]] = {name: [] for name in names}
    for job in sorted(store.jobs.values(), key=lambda job: job.created_at):
        asset = store.assets.get(str(job.inputs.get("videoUrl")))
        clip = Path(asset.file_name).stem if asset else "?"
        by_clip.setdefault(clip, []).append(job)
    archived = set(keys(s3, bucket, f"{prefix}/archive/"))
    tries = {  # list_clips maps the clips in the order of their names
        names[row["map_index"]]: row["try_number"]
        for row in cluster.task_instances(DAG_ID, run_id)
        if row["task_id"] == "clip.lipsync" and 0 <= row["map_index"] < len(names)
    }
    for clip, jobs in sorted(by_clip.items()):
        row: dict[str, Any] = {
            "clip": clip,
            "jobs": len(jobs),
            "job_ids": [job.id for job in jobs],
            "tries": tries.get(clip, 0),
        }
        if clip not in names:
            problems.append(f"{len(jobs)} paid job(s) of no clip of the batch: {row['job_ids']}")
        elif len(jobs) != 1:
            problems.append(f"{clip}: {len(jobs)} paid jobs, not 1")
        intact = []
        for job in jobs:
            output = store.assets.get(str(job.output_asset_id))
            key = f"{prefix}/archive/{job.id}/{job.output_asset_id}.mp4"
            if output is None or key not in archived:
                problems.append(f"{clip}: the output of {job.id} is not archived")
                continue
            copy = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            if hashlib.sha256(copy).digest() != hashlib.sha256(output.path.read_bytes()).digest():
                problems.append(f"{clip}: the archived output of {job.id} differs from the emulator's")
                continue
            intact.append(job.id)
        row["archived"] = (
            "archived intact (SHA-256)" if intact and len(intact) == len(jobs) else "NOT archived"
        )
        ledger.clips.append(row)
    cancels = store.requests("^/v1/jobs/[^/]+/action$", method="POST")
    if cancels:
        problems.append(f"{len(cancels)} cancel request(s), though no task was ended by a user")
    problems += [f"leaked in {where}" for where in leaked_secrets(cluster.root, emulator)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = SoakPlan(seed=0)
    parser.add_argument("--seed", type=int, default=None, help="default: a new one, printed")
    parser.add_argument("--clips", type=int, default=defaults.clips)
    parser.add_argument("--job-seconds", type=float, default=defaults.job_seconds)
    parser.add_argument("--chaos-rate", type=float, default=defaults.chaos_rate)
    parser.add_argument("--team-limit", type=int, default=defaults.team_limit)
    parser.add_argument("--worker-kills", type=int, default=defaults.worker_kills)
    parser.add_argument("--triggerer-kills", type=int, default=defaults.triggerer_kills)
    parser.add_argument("--triggerer-stalls", type=int, default=defaults.triggerer_stalls)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    plan = SoakPlan(
        seed=seed,
        clips=args.clips,
        job_seconds=args.job_seconds,
        chaos_rate=args.chaos_rate,
        team_limit=args.team_limit,
        worker_kills=args.worker_kills,
        triggerer_kills=args.triggerer_kills,
        triggerer_stalls=args.triggerer_stalls,
    )
    print(f"soak seed {seed}: {plan_arguments(plan)}", flush=True)
    # A terminated soak stops what it started: the cluster, moto and the emulator stop in their exits.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server: no line per S3 request
    from tests.cluster import running_cluster
    from tests.s3 import environment, moto_s3

    repo = Path(__file__).parent.parent
    with moto_s3("kling-soak") as s3, EmulatorServer() as emulator:
        connections = {"AIRFLOW_CONN_SCENARIO_DEFAULT": emulator.connection_uri(), **environment(s3)}
        with running_cluster(sorted((repo / "dags").glob("*.py")), connections, "") as cluster:
            ledger = run_soak(cluster, emulator, s3, "kling-soak", plan, "soak")
    print(ledger.render(), flush=True)
    return 1 if ledger.problems else 0


if __name__ == "__main__":
    sys.exit(main())
