"""Worker-slot seconds per lipsync job of ``--job-seconds`` (default 30).

The deferrable KlingLipsyncOperator against the same operator in its synchronous mode and a sleep-loop
``@task`` (what one writes by hand), each following a job of the emulator at the same time. A worker slot is
held while ``execute`` (or ``execute_complete``) runs; a deferred task holds none while its trigger waits.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
from typing import Any

from airflow_kling.jobs.status import TERMINAL_STATUSES
from bench.common import describe_machine, print_table


class _TaskInstance:
    """The part of a task instance the operator uses here: XCom pushes, kept in memory."""

    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


class _StateStore(dict[str, Any]):
    def set(self, key: str, value: Any, **_: Any) -> None:
        self[key] = value


def context() -> dict[str, Any]:
    return {"ti": _TaskInstance(), "task_state_store": _StateStore()}


def deferrable(video: str, poll: float) -> float:
    from airflow.sdk.exceptions import TaskDeferred

    from airflow_kling.operators.kling_lipsync import KlingLipsyncOperator

    operator = KlingLipsyncOperator(
        task_id="lipsync", video_asset_id=video, text="Hello", deferrable=True, poll_interval=poll
    )
    ctx = context()
    started = time.perf_counter()
    try:
        operator.execute(ctx)  # type: ignore[arg-type]
        raise RuntimeError("the operator did not defer")
    except TaskDeferred as deferral:
        held = time.perf_counter() - started
        trigger, kwargs = deferral.trigger, deferral.kwargs or {}

    async def wait() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise RuntimeError("no event")

    event = asyncio.run(wait())  # in the triggerer: no worker slot
    started = time.perf_counter()
    operator.execute_complete(ctx, event, **kwargs)  # type: ignore[arg-type]
    return held + time.perf_counter() - started


def synchronous(video: str, poll: float) -> float:
    from airflow_kling.operators.kling_lipsync import KlingLipsyncOperator

    operator = KlingLipsyncOperator(
        task_id="lipsync", video_asset_id=video, text="Hello", deferrable=False, poll_interval=poll
    )
    started = time.perf_counter()
    operator.execute(context())  # type: ignore[arg-type]
    return time.perf_counter() - started


def sleep_loop_task(video: str, poll: float) -> float:
    """The hand-written alternative: submit, then sleep and poll in the worker."""
    from airflow_kling.hooks.scenario import ScenarioHook

    started = time.perf_counter()
    hook = ScenarioHook()
    job_id = hook.run_model("model_kling-lip-sync", {"videoUrl": video, "text": "Hello"})["job"]["jobId"]
    while hook.get_job(job_id)["status"] not in TERMINAL_STATUSES:
        time.sleep(poll)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--job-seconds", type=float, default=30.0)
    parser.add_argument("--poll-interval", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    import tempfile
    from pathlib import Path

    from airflow_kling.emulator import run_emulator
    from airflow_kling.media.samples import make_video

    contenders = {
        "deferrable KlingLipsyncOperator": deferrable,
        "KlingLipsyncOperator(deferrable=False)": synchronous,
        "sleep-loop @task": sleep_loop_task,
    }
    held: dict[str, list[float]] = {name: [] for name in contenders}
    with tempfile.TemporaryDirectory() as directory, run_emulator(job_seconds=args.job_seconds) as emulator:
        os.environ["AIRFLOW_CONN_SCENARIO_DEFAULT"] = emulator.connection_uri()
        from airflow_kling.hooks.scenario import ScenarioHook

        video = ScenarioHook().upload_asset(
            make_video(Path(directory) / "face.mp4", width=1280, height=720, seconds=3, fps=10)
        )
        for _ in range(args.repeat):
            threads = [
                threading.Thread(
                    target=lambda n=name, f=function: held[n].append(f(video, args.poll_interval))
                )
                for name, function in contenders.items()
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    rows = []
    baseline = sorted(held["sleep-loop @task"])[len(held["sleep-loop @task"]) // 2]
    for name, values in held.items():
        median = sorted(values)[len(values) // 2]
        rows.append([name, f"{median:.2f} s", f"{baseline / median:.0f}x"])
    print_table(
        f"Worker-slot seconds per {args.job_seconds:g} s job (poll every {args.poll_interval:g} s) on {describe_machine()}",
        ["operator", "slot held", "sleep-loop @task / this"],
        rows,
    )


if __name__ == "__main__":
    main()
