"""One paid job per submission, whatever the gateway does with the answer: ``ScenarioHook.submit_once``
against the emulator, each case counted on the emulator's books."""

from __future__ import annotations

import time

import pytest

from airflow_kling.emulator import EmulatorServer
from airflow_kling.exceptions import ScenarioAmbiguousSubmitError
from airflow_kling.hooks.scenario import ScenarioHook
from airflow_kling.jobs.submission import MemoryRecordStore, SubmitRecord, holds_inputs, inputs_digest
from tests.connections import use_connection

# On every line: the reattach path: a record on 3.3, the inputs before.
pytestmark = pytest.mark.every_line

MODEL = "model_kling-lip-sync"
GENERATE = "^/v1/generate/"


@pytest.mark.parametrize("status", [500, 502, 504])
def test_an_error_after_the_job_was_created_adopts_it(
    status: int, hook: ScenarioHook, inputs: dict[str, object], scenario_emulator: EmulatorServer
) -> None:
    scenario_emulator.add_fault(GENERATE, status=status, after=True)
    store = MemoryRecordStore()
    submission = hook.submit_once(MODEL, inputs, store=store, settle_seconds=0)
    (job_id,) = scenario_emulator.store.jobs
    assert submission.job_id == job_id
    assert submission.how == "adopted"
    assert [r["status"] for r in scenario_emulator.store.paid_submissions()] == [status]
    assert store.record is not None
    assert store.record.job_id == job_id


def test_a_connection_dropped_after_creation_adopts_the_job(
    hook: ScenarioHook, inputs: dict[str, object], scenario_emulator: EmulatorServer
) -> None:
    scenario_emulator.add_fault(GENERATE, action="drop", after=True)
    submission = hook.submit_once(MODEL, inputs, settle_seconds=0)
    assert list(scenario_emulator.store.jobs) == [submission.job_id]
    assert submission.how == "adopted"


@pytest.fixture
def impatient_hook(monkeypatch: pytest.MonkeyPatch, scenario_emulator: EmulatorServer) -> ScenarioHook:
    """A hook that stops waiting for an answer after half a second."""
    use_connection(monkeypatch, scenario_emulator, timeout=0.5)
    return ScenarioHook()


def test_an_answer_past_the_read_timeout_adopts_the_job(
    impatient_hook: ScenarioHook, inputs: dict[str, object], scenario_emulator: EmulatorServer
) -> None:
    scenario_emulator.add_fault(GENERATE, delay=2.0, after=True)
    submission = impatient_hook.submit_once(MODEL, inputs, settle_seconds=0)
    time.sleep(2.0)  # the late answer has come and gone: still one job
    assert list(scenario_emulator.store.jobs) == [submission.job_id]
    assert len(scenario_emulator.store.paid_submissions()) == 1


def test_a_request_in_flight_that_creates_its_job_late_is_waited_for(
    impatient_hook: ScenarioHook, inputs: dict[str, object], scenario_emulator: EmulatorServer
) -> None:
    scenario_emulator.add_fault(GENERATE, delay=1.5)  # the job appears 1.5 s after the request
    submission = impatient_hook.submit_once(MODEL, inputs, settle_seconds=10)
    assert list(scenario_emulator.store.jobs) == [submission.job_id]
    assert submission.how == "adopted"
    assert len(scenario_emulator.store.paid_submissions()) == 1


@pytest.mark.parametrize("status", [502, 504])
def test_an_error_before_anything_was_created_submits_again_after_the_settle_window(
    status: int, hook: ScenarioHook, inputs: dict[str, object], scenario_emulator: EmulatorServer
) -> None:
    scenario_emulator.add_fault(GENERATE, status=status)
    submission = hook.submit_once(MODEL, inputs, settle_seconds=0.5)
    assert list(scenario_emulator.store.jobs) == [submission.job_id]
    assert submission.how == "submitted"
    assert [r["status"] for r in scenario_emulator.store.paid_submissions()] == [status, 200]
    lookups = scenario_emulator.store.requests("^/v1/jobs$")
    assert lookups
    assert all("createdAfter" in r["query"] for r in lookups)  # type: ignore[operator]


def test_429_and_503_are_resent_without_a_lookup(
    hook: ScenarioHook, inputs: dict[str, object], scenario_emulator: EmulatorServer
) -> None:
    scenario_emulator.add_fault(GENERATE, status=503, headers={"retry-after-ms": "20"})
    scenario_emulator.add_fault(GENERATE, status=429, headers={"retry-after-ms": "20"})
    submission = hook.submit_once(MODEL, inputs)
    assert list(scenario_emulator.store.jobs) == [submission.job_id]
    assert scenario_emulator.store.requests("^/v1/jobs$") == []


def test_an_estimate_answered_500_is_retried_as_a_read(
    hook: ScenarioHook, inputs: dict[str, object], scenario_emulator: EmulatorServer
) -> None:
    scenario_emulator.add_fault(GENERATE, status=500, headers={"retry-after-ms": "20"})
    estimate = hook.run_model(MODEL, inputs, dry_run=True)
    assert estimate["creativeUnitsCost"] == 30
    assert [r["status"] for r in scenario_emulator.store.requests(GENERATE)] == [500, 269]
    assert scenario_emulator.store.jobs == {}


def test_a_record_without_a_job_id_finds_the_job_of_a_dead_try(
    hook: ScenarioHook, inputs: dict[str, object], scenario_emulator: EmulatorServer
) -> None:
    intent_at = time.time()
    first = hook.run_model(MODEL, inputs)["job"]["jobId"]  # the dead try's POST; its answer never recorded
    store = MemoryRecordStore(SubmitRecord(inputs_digest(MODEL, inputs), intent_at))
    submission = hook.submit_once(MODEL, inputs, store=store, settle_seconds=0)
    assert submission.job_id == first
    assert submission.how == "adopted"
    assert len(scenario_emulator.store.jobs) == 1


def test_a_record_read_back_keeps_only_ids_and_its_job_is_then_looked_for(
    hook: ScenarioHook, inputs: dict[str, object], scenario_emulator: EmulatorServer
) -> None:
    """The task state store is written by others too: a job id of another shape is no job id (the intent
    stands, and the job of that intent is found), claimed entries are ids, the newest 100."""
    intent_at = time.time()
    first = hook.run_model(MODEL, inputs)["job"]["jobId"]
    stored = {
        "inputs_digest": inputs_digest(MODEL, inputs),
        "intent_at": intent_at,
        "job_id": "../../jobs/job_other",
        "claimed": [7, "job_a/b", *(f"job_old{number}" for number in range(150))],
    }
    record = SubmitRecord.from_json(stored)
    assert record is not None
    assert (record.job_id, record.intent_at) == (None, intent_at)
    assert record.claimed == tuple(f"job_old{number}" for number in range(50, 150))
    submission = hook.submit_once(MODEL, inputs, store=MemoryRecordStore(record), settle_seconds=0)
    assert (submission.job_id, submission.how) == (first, "adopted")
    assert len(scenario_emulator.store.jobs) == 1
    assert not any("job_other" in entry["path"] for entry in scenario_emulator.store.requests())


def test_a_job_claimed_by_an_earlier_try_is_not_adopted(
    hook: ScenarioHook, inputs: dict[str, object], scenario_emulator: EmulatorServer
) -> None:
    intent_at = time.time()
    earlier = hook.run_model(MODEL, inputs)["job"]["jobId"]
    store = MemoryRecordStore(SubmitRecord(inputs_digest(MODEL, inputs), intent_at, claimed=(earlier,)))
    submission = hook.submit_once(MODEL, inputs, store=store, settle_seconds=0)
    assert submission.job_id != earlier
    assert submission.how == "submitted"
    assert len(scenario_emulator.store.jobs) == 2


def test_a_recorded_job_the_api_does_not_know_is_submitted_anew(
    hook: ScenarioHook,
    inputs: dict[str, object],
    scenario_emulator: EmulatorServer,
    captured_logs: object,
) -> None:
    store = MemoryRecordStore(
        SubmitRecord(inputs_digest(MODEL, inputs), time.time() - 60, job_id="job_purged")
    )
    submission = hook.submit_once(MODEL, inputs, store=store)
    assert list(scenario_emulator.store.jobs) == [submission.job_id]
    assert "job_purged" in (store.record.claimed if store.record else ())


def test_a_recorded_running_job_is_reattached(
    hook: ScenarioHook, inputs: dict[str, object], scenario_emulator: EmulatorServer
) -> None:
    first = hook.submit_once(MODEL, inputs, store=(store := MemoryRecordStore()))
    again = hook.submit_once(MODEL, inputs, store=store)
    assert again.job_id == first.job_id
    assert again.how == "reattached"
    assert len(scenario_emulator.store.paid_submissions()) == 1


def test_without_a_record_a_failed_job_is_not_adopted_but_a_running_one_is(
    hook: ScenarioHook, inputs: dict[str, object], scenario_emulator: EmulatorServer
) -> None:
    since = time.time()
    scenario_emulator.plan_jobs("failure", error="temporary error", seconds=0)
    failed = hook.run_model(MODEL, inputs)["job"]["jobId"]
    running = hook.submit_once(MODEL, inputs, adopt_since=since)
    assert running.job_id != failed
    assert running.how == "submitted"
    adopted = hook.submit_once(MODEL, inputs, adopt_since=since)
    assert adopted.job_id == running.job_id
    assert adopted.how == "adopted"
    assert len(scenario_emulator.store.jobs) == 2


def test_repeated_lost_answers_give_up_without_paying_more(
    hook: ScenarioHook, inputs: dict[str, object], scenario_emulator: EmulatorServer
) -> None:
    scenario_emulator.add_fault(GENERATE, status=502, times=10)
    with pytest.raises(ScenarioAmbiguousSubmitError, match="not submitting again"):
        hook.submit_once(MODEL, inputs, settle_seconds=0)
    assert scenario_emulator.store.jobs == {}
    assert len(scenario_emulator.store.paid_submissions()) == 3


def test_inputs_match_with_defaults_added_by_the_api() -> None:
    job = {"modelId": MODEL, "metadata": {"input": {"videoUrl": "a", "text": "t", "voiceId": "en_AOT"}}}
    assert holds_inputs(job, MODEL, {"videoUrl": "a", "text": "t"})
    assert not holds_inputs(job, MODEL, {"videoUrl": "a", "text": "other"})
    assert not holds_inputs(job, "model_other", {"videoUrl": "a", "text": "t"})
    assert not holds_inputs({"metadata": {}}, MODEL, {"videoUrl": "a"})
