"""The operators and the sensor inside real DAG runs (``airflow dags test``), synchronous and deferrable,
against the emulator; what happened is read from the emulator's request log and Airflow's database."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from airflow_kling.emulator import EmulatorServer
from airflow_kling.hooks.scenario import ScenarioHook
from airflow_kling.version_compat import AIRFLOW_V_3_3_PLUS
from tests.airflow_runs import dags_test
from tests.connections import use_connection
from tests.media_samples import sample_audio, sample_video, submit_text_job
from tests.statsd_listener import kling_metrics, received, statsd

GENERATE = "^/v1/generate/"
MODES = ["sync", "deferrable"]
__all__ = ["statsd"]  # the StatsD listener fixture


@pytest.fixture
def video(scenario_emulator: EmulatorServer, airflow_home: Path) -> str:
    return ScenarioHook().upload_asset(sample_video())


@pytest.fixture
def audio(scenario_emulator: EmulatorServer) -> str:
    return ScenarioHook().upload_asset(sample_audio())


@pytest.mark.every_line
@pytest.mark.parametrize("mode", MODES)
def test_lipsync_success(mode: str, scenario_emulator: EmulatorServer, video: str, audio: str) -> None:
    run = dags_test(f"kling_{mode}", {"video": video, "audio": audio})
    assert run.states == {"lipsync": "success"}, run.output[-3000:]
    result = run.return_values["lipsync"]
    (job_id,) = scenario_emulator.store.jobs
    assert result["job_id"] == job_id
    assert result["status"] == "success"
    assert len(result["asset_ids"]) == 1
    assert result["creative_units_cost"] == 30  # 10 CU per started second of the 3 s sample clip
    assert scenario_emulator.store.jobs[job_id].inputs == {"videoUrl": video, "audioFile": audio}
    assert f"Submitted Scenario job {job_id}" in run.output
    assert (
        f"Scenario job {job_id}: success, assets ['{result['asset_ids'][0]}'], 30.0 creative units"
        in run.output
    )
    assert ("Pausing task as DEFERRED" in run.output) is (mode == "deferrable")
    assert len(scenario_emulator.store.paid_submissions()) == 1
    job_url = f"{scenario_emulator.origin}/jobs/{job_id}"
    assert run.xcom("lipsync", "scenario_job_url") == job_url
    assert run.xcom("lipsync", "_link_ScenarioJobLink") == job_url  # what the "Scenario job" button opens


@pytest.mark.parametrize("mode", MODES)
def test_job_failure_fails_the_task_with_the_jobs_error(
    mode: str, scenario_emulator: EmulatorServer, video: str
) -> None:
    scenario_emulator.plan_jobs(
        "failure", error="No face detected in the video", hint="Use a clip with a visible face"
    )
    run = dags_test(f"kling_{mode}", {"video": video, "text": "hello there"})
    assert run.states == {"lipsync": "failed"}
    assert "No face detected in the video Hint: Use a clip with a visible face" in run.output
    assert "retrying cannot help" in run.output
    assert run.tries["lipsync"] == 1  # the model refused the inputs: no retry, no second bill
    assert len(scenario_emulator.store.paid_submissions()) == 1


@pytest.mark.parametrize("mode", MODES)
def test_validation_errors_never_reach_the_api(
    mode: str, scenario_emulator: EmulatorServer, video: str
) -> None:
    run = dags_test(f"kling_{mode}", {"video": video, "text": "x" * 121})
    # A run with the session's environment (but its connections and test name) is forked from the process that
    # imported Airflow once (docs/development.md): seconds instead of a new Airflow's start-up each time.
    assert run.forked
    assert run.states == {"lipsync": "failed"}
    assert "text must be 1-120 characters, got 121" in run.output
    assert scenario_emulator.store.requests(GENERATE) == []


@pytest.mark.every_line
@pytest.mark.parametrize("mode", MODES)
def test_retry_reattaches_instead_of_submitting_again(
    mode: str, scenario_emulator: EmulatorServer, video: str
) -> None:
    scenario_emulator.add_fault("^/v1/jobs/job_", status=404, times=1)  # the first try loses its job
    run = dags_test(f"kling_{mode}", {"video": video, "text": "hello there"})
    assert run.states == {"lipsync": "success"}, run.output[-3000:]
    assert run.history("lipsync") == ["failed"]  # the first try failed, the second one succeeded
    (job_id,) = scenario_emulator.store.jobs
    if AIRFLOW_V_3_3_PLUS:  # the task_state_store names the job
        assert f"Reattaching to job {job_id} submitted by an earlier try" in run.output
    else:  # no store outlives a try: the job is found by its inputs
        assert f"Adopting job {job_id}" in run.output
    assert len(scenario_emulator.store.paid_submissions()) == 1


def test_spend_guard_refuses_an_expensive_job(scenario_emulator: EmulatorServer, video: str) -> None:
    run = dags_test("kling_sync", {"video": video, "text": "hello there", "max_cu": 10})
    assert run.states == {"lipsync": "failed"}
    assert "the estimate is 30 creative units, above max_creative_units=10" in run.output
    assert [r["query"].get("dryRun") for r in scenario_emulator.store.requests(GENERATE)] == ["api"]  # type: ignore[union-attr]
    assert scenario_emulator.store.jobs == {}


@pytest.mark.every_line
@pytest.mark.parametrize("mode", MODES)
def test_submit_without_waiting_then_sense(mode: str, scenario_emulator: EmulatorServer, video: str) -> None:
    run = dags_test(f"submit_then_sense_{mode}", {"video": video, "text": "hello there"})
    assert run.states == {"submit": "success", "sense": "success"}, run.output[-3000:]
    submitted, sensed = run.return_values["submit"], run.return_values["sense"]
    assert submitted["status"] in ("queued", "pending")
    assert sensed["job_id"] == submitted["job_id"]
    assert sensed["status"] == "success"
    assert sensed["asset_ids"]


@pytest.mark.parametrize("mode", MODES)
def test_sensor_soft_fails_on_a_canceled_job(
    mode: str, scenario_emulator: EmulatorServer, video: str
) -> None:
    scenario_emulator.plan_jobs("canceled")
    run = dags_test(f"submit_then_sense_{mode}", {"video": video, "text": "hello there"})
    assert run.states == {"submit": "success", "sense": "skipped"}, run.output[-3000:]
    assert "ended with status canceled" in run.output


def test_deferrable_sensor_soft_fails_on_a_job_that_already_failed(
    scenario_emulator: EmulatorServer, airflow_home: Path
) -> None:
    job_id = submit_text_job(scenario_emulator, outcome="failure", error="No face detected", seconds=0.05)
    time.sleep(0.1)
    run = dags_test("sense_given_job", {"job_id": job_id})
    assert run.states == {"sense": "skipped"}, run.output[-3000:]
    assert "No face detected" in run.output
    assert "Pausing task as DEFERRED" not in run.output  # the first check saw the ending: no deferral


def test_a_job_already_over_at_submission_is_not_waited_for(
    scenario_emulator: EmulatorServer, video: str
) -> None:
    scenario_emulator.plan_jobs("failure", error="No face detected in the video", seconds=0)
    run = dags_test("kling_deferrable", {"video": video, "text": "hello there"})
    assert run.states == {"lipsync": "failed"}
    assert "No face detected in the video" in run.output
    assert "Pausing task as DEFERRED" not in run.output
    (job_id,) = scenario_emulator.store.jobs
    assert scenario_emulator.store.requests(f"^/v1/jobs/{job_id}$") == []  # never polled


# -- one paid job per task, in every failure path ------------------------------------------------------------

LOST_ANSWERS = {
    "500-after-creation": {"status": 500, "after": True},
    "502-after-creation": {"status": 502, "after": True},
    "504-after-creation": {"status": 504, "after": True},
    "dropped-after-creation": {"action": "drop", "after": True},
    "answer-past-the-read-timeout": {"delay": 3.0, "after": True},
    "502-before-creation": {"status": 502},
    "504-before-creation": {"status": 504},
}


@pytest.fixture
def one_second_read_timeout(monkeypatch: pytest.MonkeyPatch, scenario_emulator: EmulatorServer) -> None:
    use_connection(monkeypatch, scenario_emulator, timeout=1.0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", LOST_ANSWERS)
def test_a_lost_answer_pays_for_one_job(
    fault: str, mode: str, scenario_emulator: EmulatorServer, video: str, one_second_read_timeout: None
) -> None:
    scenario_emulator.add_fault(GENERATE, method="POST", **LOST_ANSWERS[fault])
    run = dags_test(f"kling_{mode}", {"video": video, "text": "hello there"})
    assert run.states == {"lipsync": "success"}, run.output[-3000:]
    (job_id,) = scenario_emulator.store.jobs  # exactly one job on the books
    assert run.return_values["lipsync"]["job_id"] == job_id
    assert run.tries["lipsync"] == 1  # found within the try, not by a retry
    adopted = f"Adopting job {job_id}" in run.output
    assert adopted is fault.endswith(("after-creation", "read-timeout")), run.output[-3000:]


def test_a_500_on_the_estimate_is_retried_and_pays_once(
    scenario_emulator: EmulatorServer, video: str
) -> None:
    scenario_emulator.add_fault(GENERATE, status=500)  # the first request is the dryRun estimate
    run = dags_test("kling_sync", {"video": video, "text": "hello there", "max_cu": 1000})
    assert run.states == {"lipsync": "success"}, run.output[-3000:]
    assert [r["status"] for r in scenario_emulator.store.requests(GENERATE)] == [500, 269, 200]
    assert len(scenario_emulator.store.jobs) == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_temporary_job_failure_is_retried(mode: str, scenario_emulator: EmulatorServer, video: str) -> None:
    scenario_emulator.plan_jobs(
        "failure",
        error="The lipsync could not be completed for these inputs because of a temporary error; try again later",
    )
    run = dags_test(f"kling_{mode}", {"video": video, "text": "hello there"})
    assert run.states == {"lipsync": "success"}, run.output[-3000:]
    assert run.history("lipsync") == ["failed"]
    failed, retried = scenario_emulator.store.jobs  # the failed job (refunded) and the retry's
    assert scenario_emulator.store.jobs[failed].outcome == "failure"
    assert run.return_values["lipsync"]["job_id"] == retried
    assert "retrying cannot help" not in run.output


@pytest.mark.parametrize("mode", MODES)
def test_an_invalid_voice_speed_fails_at_once_despite_retries(
    mode: str, scenario_emulator: EmulatorServer, video: str
) -> None:
    run = dags_test(f"kling_{mode}", {"video": video, "text": "hello there", "voice_speed": 1.25})
    assert run.states == {"lipsync": "failed"}
    assert run.tries["lipsync"] == 1  # retries=1, but no retry
    assert run.history("lipsync") == []
    assert "voice_speed must be from 0.8 to 2.0 with one decimal place, got 1.25" in run.output
    assert scenario_emulator.store.requests(GENERATE) == []


@pytest.mark.parametrize("mode", MODES)
def test_a_sensor_that_times_out_on_a_stuck_job_does_not_cancel_it(
    mode: str, scenario_emulator: EmulatorServer, airflow_home: Path
) -> None:
    job_id = submit_text_job(scenario_emulator, outcome="stuck")
    run = dags_test(f"sense_briefly_{mode}", {"job_id": job_id})
    assert run.states == {"sense": "failed"}, run.output[-3000:]
    assert scenario_emulator.store.requests("^/v1/jobs/.*/action$") == []
    assert ScenarioHook().get_job(job_id)["status"] == "in-progress"


@pytest.mark.every_line
@pytest.mark.parametrize("mode", MODES)
def test_at_the_teams_ceiling_the_lipsync_waits_for_a_slot_on_its_first_try(
    mode: str, scenario_emulator: EmulatorServer, video: str, statsd: socket.socket
) -> None:
    import threading

    scenario_emulator.store.config.team_job_limit = 1
    scenario_emulator.plan_jobs(seconds=600)
    holder = ScenarioHook().run_model("model_kling-lip-sync", {"videoUrl": video, "text": "holds the slot"})
    store = scenario_emulator.store

    def free_the_slot_once_refused() -> None:  # the holder ends only after the task met the ceiling
        deadline = time.monotonic() + 240
        while store.refused_submissions == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        store.set_job_outcome(holder["job"]["jobId"], "success", seconds=0)

    threading.Thread(target=free_the_slot_once_refused, daemon=True).start()
    run = dags_test(f"kling_{mode}", {"video": video, "text": "hello there"})
    assert run.states == {"lipsync": "success"}, run.output[-3000:]
    assert run.tries["lipsync"] == 1  # waiting for a slot is no failure
    assert scenario_emulator.store.refused_submissions >= 1
    assert "The team runs its limit of 1 parallel Scenario jobs: waiting" in run.output
    assert ("Pausing task as DEFERRED" in run.output) is (mode == "deferrable")
    assert len(scenario_emulator.store.jobs) == 2  # the holder's and this task's: nothing paid twice
    (job_id,) = set(scenario_emulator.store.jobs) - {holder["job"]["jobId"]}
    assert run.return_values["lipsync"]["job_id"] == job_id
    metrics = kling_metrics(received(statsd))  # what a platform team's dashboard sees
    assert len(metrics["kling.slot_waits"]) == scenario_emulator.store.refused_submissions
    assert metrics["kling.jobs.submitted"] == ["1|c"]


@pytest.mark.every_line
def test_a_refused_submission_fails_at_once_without_a_lookup(
    scenario_emulator: EmulatorServer, video: str
) -> None:
    """A 400 created nothing: the task fails on its first try with the API's message and hint, one POST, and
    no listing of jobs looking for one "whose answer was never recorded"."""
    scenario_emulator.add_fault(
        GENERATE,
        method="POST",
        status=400,
        body={"message": "Bad video", "hint": "Use another clip"},
        times=5,
    )
    run = dags_test("kling_sync", {"video": video, "text": "hello there"})
    assert run.states == {"lipsync": "failed"}
    assert run.tries["lipsync"] == 1
    assert "answered HTTP 400: Bad video Hint: Use another clip" in run.output
    assert "nothing was created or billed" in run.output
    assert len(scenario_emulator.store.paid_submissions()) == 1
    assert scenario_emulator.store.requests("^/v1/jobs$") == []
    assert "never recorded" not in run.output


def test_a_path_given_as_an_asset_id_sends_no_request(
    scenario_emulator: EmulatorServer, airflow_home: Path
) -> None:
    run = dags_test("kling_sync", {"video": "face.mov", "text": "hello there"})
    assert run.states == {"lipsync": "failed"}
    assert run.tries["lipsync"] == 1
    assert (
        "video_asset_id must be the id of an asset (asset_...), got 'face.mov': upload the file first"
        in run.output
    )
    assert "ScenarioUploadAssetOperator" in run.output
    assert scenario_emulator.store.requests() == []  # not one request
    errors = [line for line in run.output.splitlines() if "[error" in line]
    assert len(errors) == 1, errors  # the failure, and no line that looks like a second one
    assert "Task failed with exception" in errors[0]


@pytest.mark.parametrize(
    ("written", "link"),
    [
        ({"scenario_job_url": "https://elsewhere.example/phish"}, "JOB_PAGE"),  # no address taken from it
        ({"scenario_job_id": "../../admin"}, ""),
        ({"scenario_job_id": "javascript:alert(1)"}, ""),
    ],
)
def test_the_job_link_is_built_from_a_checked_job_id(
    scenario_emulator: EmulatorServer, video: str, written: dict[str, str], link: str
) -> None:
    """The link opens the connection's ``web_url`` page of a job id of Scenario's shape, whatever the task's
    XComs were overwritten with."""
    run = dags_test("hostile_job_link", {"inputs": {"videoUrl": video, "text": "hello"}, **written})
    assert run.states == {"generate": "success"}, run.output[-3000:]
    (job_id,) = scenario_emulator.store.jobs
    expected = link.replace("JOB_PAGE", f"{scenario_emulator.origin}/jobs/{job_id}")
    assert run.xcom("generate", "_link_ScenarioJobLink") == expected
