"""One event loop that waits for many Scenario jobs, as a triggerer does.

Run as a child process by ``bench.triggerer``, with this provider's trigger, polling built on the http
provider, or the raw ``aiohttp`` floor. Under callgrind (``bench.triggerer --instructions``), with
``KLING_BENCH_INSTRUCTIONS=1``, it counts the instructions of the waits only, with the garbage collector off.

    python -m bench.trigger_loop ours|http|floor|LAYER JOBS_FILE POLL_INTERVAL RESULT_FILE

(``LAYER``: one of :data:`LAYERS`, the provider's poll built up to it.)
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import os
import resource
import sys
import time
from typing import Any

from airflow_kling.jobs.status import TERMINAL_STATUSES


async def ours(job_ids: list[str], poll_interval: float) -> list[tuple[dict[str, Any], float]]:
    from airflow_kling.triggers.job import ScenarioJobTrigger

    async def wait(job_id: str) -> tuple[dict[str, Any], float]:
        received: list[tuple[dict[str, Any], float]] = []
        async for event in ScenarioJobTrigger(job_id, poll_interval=poll_interval).run():
            received.append((event.payload, time.time()))  # iterated to its end, as the triggerer does
        (first,) = received
        return first

    return await asyncio.gather(*(wait(job_id) for job_id in job_ids))


async def http_provider(job_ids: list[str], poll_interval: float) -> list[tuple[dict[str, Any], float]]:
    """What a user writes with the http provider.

    ``HttpAsyncHook`` opens a client session (and reads the connection) on every poll, as
    ``HttpSensorTrigger`` does.
    """
    from airflow.providers.http.hooks.http import HttpAsyncHook

    async def wait(job_id: str) -> tuple[dict[str, Any], float]:
        while True:
            hook = HttpAsyncHook(method="GET", http_conn_id="scenario_http")
            async with hook.session() as http:
                response = await http.run(endpoint=f"jobs/{job_id}")
                job = (await response.json())["job"]
            if job["status"] in TERMINAL_STATUSES:
                return {"status": job["status"], "job_id": job_id, "job": job}, time.time()
            await asyncio.sleep(poll_interval)

    return await asyncio.gather(*(wait(job_id) for job_id in job_ids))


async def floor(job_ids: list[str], poll_interval: float) -> list[tuple[dict[str, Any], float]]:
    """The least a poll can cost.

    Raw ``aiohttp``, one shared session with Basic auth, GET and parse the job at a fixed interval; no
    retries, no logging, no connection lookup.
    """
    import os

    import aiohttp

    conn = json.loads(os.environ["AIRFLOW_CONN_SCENARIO_DEFAULT"])
    auth = aiohttp.BasicAuth(conn["login"], conn["password"])
    async with aiohttp.ClientSession(auth=auth, connector=aiohttp.TCPConnector(limit=100)) as session:

        async def wait(job_id: str) -> tuple[dict[str, Any], float]:
            while True:
                async with session.get(f"{conn['host']}/jobs/{job_id}") as response:
                    job = json.loads(await response.read())["job"]
                if job["status"] in TERMINAL_STATUSES:
                    return {"status": job["status"], "job_id": job_id, "job": job}, time.time()
                await asyncio.sleep(poll_interval)

        return await asyncio.gather(*(wait(job_id) for job_id in job_ids))


LAYERS = ("request", "send", "get_job", "watch", "kept")
"""The provider's poll built up one layer at a time, each contender adding one to the one before it (the whole
trigger, ``ours``, adds the last): our request sent by raw aiohttp (the hook's prepared call: its URL parsed
once, our headers, timeout, proxy and TLS arguments; the answer read and parsed as the floor does), then sent by
``ScenarioAsyncHook.send`` (the bounded read, the status handled, the JSON object checked), then asked by
``get_job`` (the answer's job and its types checked), then seen by a ``JobWatch`` (lines, the next poll aimed at
the job's predicted end), then what an event would carry kept through the sleep (``event_job``). ``ours`` adds
the trigger: its slot following, session lease, deadline and event."""


async def layered(job_ids: list[str], poll_interval: float, layer: str) -> list[tuple[dict[str, Any], float]]:
    """The poll of :data:`LAYERS` up to ``layer``, one shared session, the trigger's intervals."""
    from airflow_kling.api.contract import GET_JOB
    from airflow_kling.hooks.scenario_async import ScenarioAsyncHook, session_lease
    from airflow_kling.jobs.events import event_job
    from airflow_kling.jobs.polling import STRETCH, JobWatch
    from airflow_kling.triggers.job import LogOnFirstLine, ScenarioJobTrigger

    depth = LAYERS.index(layer)

    class Owner:  # where the watch's lines go (one a job at most, at 30 s jobs): a trigger's logger
        log = ScenarioJobTrigger("layers").log

    async def wait(job_id: str) -> tuple[dict[str, Any], float]:
        hook = ScenarioAsyncHook()
        # Each layer pays only for what it uses: get_job builds its own call, once a job, as the trigger does.
        call = await hook.prepare(GET_JOB.method, GET_JOB.path(job_id)) if depth < 2 else None
        watch = (
            JobWatch(
                job_id, poll_interval, poll_interval * STRETCH, LogOnFirstLine(Owner()), in_triggerer=True
            )
            if depth >= 3
            else None
        )
        while True:
            if call is not None and depth == 0:
                async with call.open(session) as response:
                    job = json.loads(await response.read())["job"]
            elif call is not None:
                job = (await hook.send(call))[1]["job"]
            else:
                job = await hook.get_job(job_id)
            delay: float | None = poll_interval
            if watch is not None:
                delay = watch.seen(job)
            elif job["status"] in TERMINAL_STATUSES:
                delay = None
            if delay is None:
                return {"status": job["status"], "job_id": job_id, "job": job}, time.time()
            if depth >= 4:
                job = event_job(job)
            await asyncio.sleep(delay)

    async with session_lease() as session:
        return await asyncio.gather(*(wait(job_id) for job_id in job_ids))


class GarbageCollections:
    """CPU seconds the garbage collector takes while the block runs, and its collections per generation.

    A full collection walks Airflow's whole heap, so a contender that allocates more pays in whole walks.
    """

    def __init__(self) -> None:
        self.cpu = 0.0
        self.counts = [0, 0, 0]
        self._started = 0.0

    def _track(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.cpu += time.process_time() - self._started
            self.counts[info["generation"]] += 1

    def __enter__(self) -> GarbageCollections:
        gc.callbacks.append(self._track)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._track)


CONTENDERS: dict[str, Any] = {"ours": ours, "http": http_provider, "floor": floor}
for _layer in LAYERS:
    CONTENDERS[_layer] = functools.partial(layered, layer=_layer)


async def warm_up() -> None:
    """What a triggerer pays once per process, not per poll, kept off the clock like the imports.

    Run before every contender, so that none pays it in its loop: the first connection lookup (Airflow's
    secrets backends load) and its proxy (``requests`` reads the proxy variables), the first trigger event
    (pydantic builds its validator) and the first log line (structlog configures itself).
    """
    from airflow.triggers.base import TriggerEvent

    from airflow_kling.hooks.scenario_async import ScenarioAsyncHook
    from airflow_kling.triggers.job import ScenarioJobTrigger

    (await ScenarioAsyncHook().config()).api_proxy  # noqa: B018  (the proxy variables read once a process)
    TriggerEvent({"status": "warm-up"})
    ScenarioJobTrigger("warm-up").log.info("Warming up")


def callgrind(command: str) -> None:
    """Send ``command`` to the callgrind this process runs under (``callgrind_control``)."""
    import subprocess

    subprocess.run(["callgrind_control", command, str(os.getpid())], check=True, stdout=subprocess.DEVNULL)


READY_SUFFIX = ".ready"
"""Beside the jobs file, written by the loop once it has started: the jobs are submitted after it, so that every
contender meets jobs of the same age, whatever its start-up took (under valgrind, tens of seconds that vary)."""
JOBS_WAIT_SECONDS = 600.0


def jobs_when_ready(jobs_file: str) -> list[str]:
    """Say the loop is ready (:data:`READY_SUFFIX`), then the job ids once the bench has written them."""
    with open(jobs_file + READY_SUFFIX, "w") as ready:
        ready.write(str(os.getpid()))
    deadline = time.monotonic() + JOBS_WAIT_SECONDS
    while not os.path.exists(jobs_file):
        if time.monotonic() > deadline:
            raise SystemExit(f"no jobs in {jobs_file} after {JOBS_WAIT_SECONDS:g} s")
        time.sleep(0.05)
    with open(jobs_file) as jobs:
        job_ids: list[str] = json.load(jobs)
    return job_ids


def main() -> None:
    contender, jobs_file, poll_interval, result_file = (
        sys.argv[1],
        sys.argv[2],
        float(sys.argv[3]),
        sys.argv[4],
    )
    import aiohttp  # noqa: F401  (imports are start-up, not polling: keep them off the clock)

    import airflow_kling.hooks.scenario_async
    import airflow_kling.triggers.job  # noqa: F401

    asyncio.run(warm_up())
    job_ids = jobs_when_ready(jobs_file)
    counting = os.environ.get("KLING_BENCH_INSTRUCTIONS") == "1"
    # Every contender starts from a full collection: none inherits start-up's young collections, whose count
    # decided whether a run of 1 000 jobs had one full collection or two (a lottery, not the contender's cost).
    gc.collect()
    if counting:  # instructions of the waits alone: none of start-up, none of the collector's
        gc.disable()
        callgrind("--instr=on")
    collections = GarbageCollections()
    started_cpu = time.process_time()
    started = time.time()
    with collections:
        results = asyncio.run(CONTENDERS[contender](job_ids, poll_interval))
    cpu = time.process_time() - started_cpu
    if counting:
        callgrind("--instr=off")
        gc.enable()
    delays = []
    for payload, received in results:
        success = payload["job"][
            "updatedAt"
        ]  # an ended job's last change: its end (the event carries no history)
        from datetime import datetime

        finished = datetime.fromisoformat(success.replace("Z", "+00:00")).timestamp()
        delays.append(received - finished)
    with open(result_file, "w") as out:
        json.dump(
            {
                "cpu": cpu,
                "wall": time.time() - started,
                "statuses": sorted({payload["status"] for payload, _ in results}),
                "delays": delays,
                "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "gc_cpu": collections.cpu,
                "gc_counts": collections.counts,
            },
            out,
        )


if __name__ == "__main__":
    main()
