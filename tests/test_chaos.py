"""Chaos mode: the emulator's seeded random faults, and a batch that must come through them paying once per
clip, archiving every output byte for byte, cancelling nothing."""

from __future__ import annotations

import hashlib
import shutil
import socket
from collections import Counter
from pathlib import Path

import pytest
import requests

from airflow_kling.emulator import EmulatorServer
from airflow_kling.emulator.chaos import ROUTES, Chaos
from tests.airflow_runs import dags_test
from tests.media_samples import sample_video


def decisions(chaos: Chaos, calls: list[tuple[str, str]]) -> list[str | None]:
    faults = [chaos.draw(method, path) for method, path in calls]
    return [None if fault is None else f"{fault.status} {fault.action} {fault.after}" for fault in faults]


CALLS = [("GET", "/v1/jobs/job_1"), ("POST", "/v1/generate/custom/m"), ("GET", "/_files/a/b.mp4")] * 20


def test_a_seed_draws_the_same_faults_for_the_same_calls() -> None:
    first = decisions(Chaos(seed=11, rate=0.5), CALLS)
    assert decisions(Chaos(seed=11, rate=0.5), CALLS) == first
    assert decisions(Chaos(seed=12, rate=0.5), CALLS) != first
    assert any(first)
    assert None in first


def test_a_routes_faults_do_not_depend_on_other_routes_calls() -> None:
    """The n-th call of a route meets the same fault however the routes interleave."""
    jobs = [call for call in CALLS if call[1].startswith("/v1/jobs")]
    mixed = decisions(Chaos(seed=5, rate=0.5), CALLS)
    alone = decisions(Chaos(seed=5, rate=0.5), jobs)
    assert [mixed[index] for index, call in enumerate(CALLS) if call in jobs] == alone


def test_no_route_meets_more_faults_in_a_row_than_the_bound() -> None:
    chaos = Chaos(seed=1, rate=1.0, max_in_a_row=2)
    drawn = decisions(chaos, [("GET", "/v1/jobs/job_1")] * 9)
    assert [value is not None for value in drawn] == [True, True, False] * 3
    assert sum(chaos.injected.values()) == 6
    assert chaos.report()["injected"] == 6


def test_only_the_routes_asked_for_are_troubled_and_unknown_ones_are_refused() -> None:
    chaos = Chaos(seed=3, rate=1.0, routes=frozenset({"file"}))
    assert chaos.draw("GET", "/v1/jobs/job_1") is None
    assert chaos.draw("GET", "/_files/a/b.mp4") is not None
    assert chaos.draw("POST", "/v1/jobs/job_1/action") is None  # cancels are never troubled
    with pytest.raises(ValueError, match=r"chaos routes \['nope'\] are not among"):
        Chaos(seed=3, routes=frozenset({"nope"}))
    with pytest.raises(ValueError, match="rate must be from 0 to 1"):
        Chaos(seed=3, rate=2)
    assert {name for name, *_ in ROUTES} >= {"generate", "upload-create", "upload-action", "part", "file"}


def test_file_downloads_meet_every_fault_of_their_route() -> None:
    """Truncated and expired files, errors, drops, and hosts that ignore or misplace ranges (docs/emulator.md)."""
    chaos = Chaos(seed=11, rate=1.0, max_in_a_row=1000, routes=frozenset({"file"}))
    for _ in range(300):
        chaos.draw("GET", "/_files/asset_a/clip.mp4")
    assert {kind for _, kind in chaos.injected} == {
        "truncate", "expired", "500", "drop", "ignore-range", "wrong-range"
    }  # fmt: skip


def test_the_admin_api_turns_chaos_on_reports_it_and_refuses_bad_settings(
    scenario_emulator: EmulatorServer,
) -> None:
    admin = f"{scenario_emulator.origin}/_emulator"
    auth = (scenario_emulator.config.api_key, scenario_emulator.config.api_secret)
    assert requests.get(f"{admin}/chaos", timeout=10).json() is None
    assert requests.post(f"{admin}/settings", json={"chaos": {"seed": 4, "rate": 1}}, timeout=10).ok
    answers = [
        requests.get(f"{scenario_emulator.base_url}/jobs", auth=auth, timeout=10).status_code
        for _ in range(3)
    ]
    assert 200 not in answers[:2]
    assert answers[2] == 200, answers  # two in a row at most
    report = requests.get(f"{admin}/chaos", timeout=10).json()
    assert (report["seed"], report["injected"]) == (4, 2)
    refused = requests.post(f"{admin}/settings", json={"chaos": {"rate": 1}}, timeout=10)
    assert refused.status_code == 400
    assert "seed" in refused.json()["message"]
    assert requests.post(f"{admin}/settings", json={"chaos": None}, timeout=10).ok
    assert requests.get(f"{admin}/chaos", timeout=10).json() is None


def test_the_command_line_starts_in_chaos_mode() -> None:
    from airflow_kling.emulator import spawn_emulator

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = spawn_emulator(port, chaos_seed=9, chaos_rate=0.5)
    try:
        report = requests.get(f"http://127.0.0.1:{port}/_emulator/chaos", timeout=5).json()
        assert (report["seed"], report["rate"]) == (9, 0.5)
    finally:
        process.terminate()
        assert process.wait(timeout=10) is not None


@pytest.mark.parametrize("seed", [7, 2026])
def test_a_batch_under_chaos_pays_once_per_clip_and_archives_every_output(
    seed: int, scenario_emulator: EmulatorServer, airflow_home: Path, tmp_path: Path
) -> None:
    videos = []
    for number in range(6):
        videos.append(str(tmp_path / f"clip-{number}.mp4"))
        shutil.copy(sample_video(), videos[-1])
    destination = tmp_path / "archive"
    # Besides the random faults: the first submission's answer is lost after its job was created.
    scenario_emulator.add_fault("^/v1/generate/", method="POST", status=502, after=True)
    chaos = scenario_emulator.start_chaos(seed, rate=0.3)
    run = dags_test("chaos_batch", {"videos": videos, "destination": str(destination)})
    report = chaos.report()
    scenario_emulator.store.chaos = None
    faults = f"seed {seed}: {report}"
    assert run.returncode == 0, f"{faults}\n{run.output[-4000:]}"
    assert set(run.mapped_states) == {"upload", "lipsync", "archive"}
    assert all(state == "success" for states in run.mapped_states.values() for state in states), faults
    assert report["injected"] >= 20, faults
    store = scenario_emulator.store
    clips = Counter(job.inputs["videoUrl"] for job in store.jobs.values())
    assert sorted(clips.values()) == [1] * 6, faults  # six clips, one paid job each
    assert set(clips) <= set(store.assets)
    assert store.requests("^/v1/jobs/[^/]+/action$") == []  # no cancel
    for job in store.jobs.values():
        asset = store.asset(str(job.output_asset_id))
        archived = destination / job.id / f"{asset.id}.mp4"
        assert (
            hashlib.sha256(archived.read_bytes()).hexdigest()
            == hashlib.sha256(asset.path.read_bytes()).hexdigest()
        )
    assert "signature=" not in run.output
    assert scenario_emulator.config.api_secret not in run.output


def test_an_upload_whose_complete_answer_was_lost_still_gives_its_asset(
    scenario_emulator: EmulatorServer,
) -> None:
    from airflow_kling.hooks.scenario import ScenarioHook

    scenario_emulator.add_fault("^/v1/uploads/[^/]+/action$", method="POST", status=502, after=True)
    asset_id = ScenarioHook().upload_asset(sample_video())
    assert asset_id in scenario_emulator.store.assets
    completes = scenario_emulator.store.requests("^/v1/uploads/[^/]+/action$", "POST")
    assert [entry["status"] for entry in completes] == [502, 400]  # the retry found it already done
