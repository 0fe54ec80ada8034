"""Behind a forward proxy: the standard proxy variables, or a proxy named in the connection, reach every HTTP
path (uploads, the API in a worker and in the deferrable wait, the archive's download), checked on the emulator's
books by the proxy's ``Via`` header."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_kling.emulator import EmulatorServer
from airflow_kling.hooks.scenario import ScenarioHook
from tests.airflow_runs import dags_test
from tests.connections import use_connection
from tests.media_samples import poll_async
from tests.proxy import VIA_NAME, tinyproxy


def vias(emulator: EmulatorServer, path: str) -> list[str | None]:
    return [entry["via"] for entry in emulator.store.requests(path)]


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
        assert poll_async(job_id)["jobId"] == job_id
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
        assert poll_async(job_id)["jobId"] == job_id
    assert vias(scenario_emulator, f"^/v1/jobs/{job_id}$") == [None]


PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def run_pipeline_through(emulator: EmulatorServer, destination: Path) -> None:
    """The deferrable pipeline end to end; every request the emulator saw came through the test's proxy."""
    emulator.store.reset()
    run = dags_test("kling_lipsync_pipeline", {"destination": str(destination)})
    assert set(run.states.values()) == {"success"}, run.output[-4000:]
    assert "Pausing task as DEFERRED" in run.output  # the wait ran in the trigger, through the async hook
    (job_id,) = emulator.store.jobs
    assert (destination / job_id / "manifest.json").is_file()
    seen = emulator.store.requests()
    paths = {
        entry["path"].split("/")[1] if entry["path"].startswith("/_") else entry["path"] for entry in seen
    }
    assert {"/v1/uploads", f"/v1/jobs/{job_id}", "_uploads", "_files"} <= paths, paths
    direct = [f"{entry['method']} {entry['path']}" for entry in seen if VIA_NAME not in (entry["via"] or "")]
    assert direct == [], f"requests that did not go through the proxy: {direct}"


def test_a_deferrable_pipeline_goes_through_the_environments_proxy(
    scenario_emulator: EmulatorServer, example_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tinyproxy(tmp_path) as proxy:
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, proxy)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        run_pipeline_through(scenario_emulator, tmp_path / "archive")


def test_a_deferrable_pipeline_goes_through_the_proxy_named_in_the_connection(
    scenario_emulator: EmulatorServer, example_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (*PROXY_VARIABLES, "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with tinyproxy(tmp_path) as proxy:
        use_connection(monkeypatch, scenario_emulator, proxies={"http": proxy})
        run_pipeline_through(scenario_emulator, tmp_path / "archive")
