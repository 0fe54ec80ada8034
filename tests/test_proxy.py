"""Behind a forward proxy: the standard proxy variables reach every HTTP path, the deferrable one included (its
aiohttp session ignored them before), checked on the emulator's books by the proxy's ``Via`` header."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from airflow_kling.emulator import EmulatorServer
from airflow_kling.hooks.scenario import ScenarioHook
from tests.proxy import VIA_NAME, tinyproxy


def vias(emulator: EmulatorServer, path: str) -> list[str | None]:
    return [entry["via"] for entry in emulator.store.requests(path)]


def poll_async(job_id: str) -> str:
    """One poll of the job through the async hook (the deferrable waits' path), in an event loop of its own."""
    from airflow_kling.hooks.scenario_async import ScenarioAsyncHook, close_shared_session

    async def poll() -> str:
        try:
            return str((await ScenarioAsyncHook().get_job(job_id))["jobId"])
        finally:
            await close_shared_session()

    return asyncio.run(poll())


def test_the_proxy_variables_reach_the_sync_and_the_async_hook(
    scenario_emulator: EmulatorServer,
    inputs: dict[str, object],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_id = ScenarioHook().run_model("model_kling-lip-sync", inputs)["job"]["jobId"]
    assert vias(scenario_emulator, f"^/v1/jobs/{job_id}$") == []
    with tinyproxy(tmp_path) as proxy:
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, proxy)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        ScenarioHook().get_job(job_id)
        assert poll_async(job_id) == job_id
    seen = vias(scenario_emulator, f"^/v1/jobs/{job_id}$")
    assert len(seen) == 2
    assert all(via is not None and VIA_NAME in via for via in seen), seen


def test_no_proxy_is_honoured_too(
    scenario_emulator: EmulatorServer,
    inputs: dict[str, object],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_id = ScenarioHook().run_model("model_kling-lip-sync", inputs)["job"]["jobId"]
    with tinyproxy(tmp_path) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert poll_async(job_id) == job_id
    assert vias(scenario_emulator, f"^/v1/jobs/{job_id}$") == [None]
