"""Real, tiny media for the tests, synthesized once per test session (the emulator probes uploads as the
API does, so a few bytes named ``.mp4`` are not a video), and jobs made from them."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from airflow_kling.emulator import EmulatorServer
from airflow_kling.media.samples import make_audio, make_video

_DIR = Path(tempfile.mkdtemp(prefix="kling-test-media-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)  # about 1 MB a test process: none left behind


@cache
def sample_video() -> Path:
    """1280x720, 3 s at 10 fps, with a sound track: within every Kling limit."""
    return Path(make_video(_DIR / "face.mp4", width=1280, height=720, seconds=3, fps=10))


@cache
def sample_audio() -> Path:
    """A 2 s tone as MP3."""
    return Path(make_audio(_DIR / "voice.mp3", seconds=2))


def submit_text_job(emulator: EmulatorServer, **plan: Any) -> str:
    """Upload the sample clip and submit a text-driven lipsync job; ``plan``: its outcome and duration."""
    from airflow_kling.hooks.scenario import ScenarioHook

    hook = ScenarioHook()
    video = hook.upload_asset(sample_video())
    if plan:
        emulator.plan_jobs(**plan)
    return str(hook.run_model("model_kling-lip-sync", {"videoUrl": video, "text": "hi"})["job"]["jobId"])


def output_assets(job_id: str, limit: float = 30.0) -> list[str]:
    """The output asset ids of a job that succeeds, once it has (polled: the emulator makes the file first)."""
    import time

    from airflow_kling.hooks.scenario import ScenarioHook

    hook, deadline = ScenarioHook(), time.monotonic() + limit
    while time.monotonic() < deadline:
        job = hook.get_job(job_id)
        if job["status"] == "success":
            return list(job["metadata"]["assetIds"])
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not succeed within {limit} s")


def write_png(path: Path, width: int = 16, height: int = 16) -> Path:
    """A small, valid PNG (grey, 8-bit) at ``path``."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes([(x * 16) % 256 for x in range(width)]) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return path


def poll_async(job_id: str) -> dict[str, Any]:
    """One poll of a job through the async hook (the deferrable waits' path), in an event loop of its own, with
    ``scenario_default`` read as the test set it last (the process's cached connections forgotten)."""
    import asyncio

    from airflow_kling.hooks import scenario_async

    async def poll() -> dict[str, Any]:
        scenario_async._configs.clear()
        try:
            return await scenario_async.ScenarioAsyncHook().get_job(job_id)
        finally:
            await scenario_async.close_shared_session()

    return asyncio.run(poll())
