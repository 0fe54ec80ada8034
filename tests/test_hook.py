"""ScenarioHook against the emulator on loopback: every method, every retry rule, every error."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from airflow_kling.exceptions import (
    ScenarioAmbiguousSubmitError,
    ScenarioAPIError,
    ScenarioAuthError,
    ScenarioCredentialsError,
    ScenarioNotFoundError,
    ScenarioTransportError,
    ScenarioUploadError,
)
from airflow_kling.files import uploads
from airflow_kling.hooks.scenario import ScenarioHook

if TYPE_CHECKING:
    from airflow_kling.emulator import EmulatorServer
from tests.connections import use_connection
from tests.media_samples import sample_audio, sample_video

# On every line: the hook stands on the http provider's HttpHook, whose version follows the line.
pytestmark = pytest.mark.every_line

MODEL = "model_kling-lip-sync"
GENERATE = "/v1/generate/custom/"


def media_assets(hook: ScenarioHook) -> tuple[str, str]:
    video = hook.upload_asset(sample_video())
    audio = hook.upload_asset(sample_audio())
    return video, audio


def wait_for_terminal(hook: ScenarioHook, job_id: str, limit: float = 10.0) -> dict[str, object]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        job = hook.get_job(job_id)
        if job["status"] in ("success", "failure", "canceled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end within {limit} s")


# -- methods ------------------------------------------------------------------------------------------------


def test_run_model_get_job_and_output_asset(hook: ScenarioHook, scenario_emulator: EmulatorServer) -> None:
    video, audio = media_assets(hook)
    response = hook.run_model(MODEL, {"videoUrl": video, "audioFile": audio})
    job_id = response["job"]["jobId"]
    assert job_id.startswith("job_")
    assert response["creativeUnitsCost"] > 0
    job = wait_for_terminal(hook, job_id)
    assert job["status"] == "success"
    assert [entry["status"] for entry in job["statusHistory"]] == [  # type: ignore[union-attr]
        "queued",
        "warming-up",
        "in-progress",
        "finalizing",
        "success",
    ]
    (output_id,) = job["metadata"]["assetIds"]  # type: ignore[index]
    asset = hook.get_asset(output_id)
    assert asset["kind"] == "video"
    assert asset["metadata"]["parentJobId"] == job_id


def test_dry_run_estimates_without_creating_a_job(
    hook: ScenarioHook, scenario_emulator: EmulatorServer
) -> None:
    video, audio = media_assets(hook)
    estimate = hook.run_model(MODEL, {"videoUrl": video, "audioFile": audio}, dry_run=True)
    assert estimate["creativeUnitsCost"] > 0
    assert scenario_emulator.store.jobs == {}
    (request,) = scenario_emulator.store.requests(GENERATE)
    assert (request["query"]["dryRun"], request["status"]) == ("api", 269)


def test_cancel_job(hook: ScenarioHook, scenario_emulator: EmulatorServer) -> None:
    video, audio = media_assets(hook)
    scenario_emulator.plan_jobs("stuck")
    job_id = hook.run_model(MODEL, {"videoUrl": video, "audioFile": audio})["job"]["jobId"]
    assert hook.cancel_job(job_id)["status"] == "canceled"
    assert hook.get_job(job_id)["status"] == "canceled"
    with pytest.raises(ScenarioAPIError, match="already canceled") as raised:
        hook.cancel_job(job_id)
    assert raised.value.status == 400


def test_list_jobs_pages_on_the_token_alone(hook: ScenarioHook, scenario_emulator: EmulatorServer) -> None:
    video, _audio = media_assets(hook)
    created = {
        hook.run_model(MODEL, {"videoUrl": video, "text": f"hello {n}"})["job"]["jobId"] for n in range(5)
    }
    scenario_emulator.store.empty_pages = True
    listed = [job["jobId"] for job in hook.list_jobs(page_size=2)]
    assert sorted(listed) == sorted(created)
    pages = scenario_emulator.store.requests(r"^/v1/jobs$")
    assert len(pages) == 5  # 3 pages with jobs and 2 empty pages that carried a token
    assert all(page["query"]["pageSize"] == "2" for page in pages)


def test_get_download_url_gives_a_working_signed_url(
    hook: ScenarioHook, scenario_emulator: EmulatorServer
) -> None:
    video = hook.upload_asset(sample_video())
    url = hook.get_download_url(video)
    response = hook.session.get(url)
    assert (response.status_code, response.content) == (200, sample_video().read_bytes())


def test_project_id_from_the_connection_is_sent(
    monkeypatch: pytest.MonkeyPatch, scenario_emulator: EmulatorServer
) -> None:
    use_connection(monkeypatch, scenario_emulator, project_id="proj_team_a")
    hook = ScenarioHook()
    video = hook.upload_asset(sample_video())
    assert hook.get_asset(video)["ownerId"] == "proj_team_a"
    assert all(
        r["query"].get("projectId") == "proj_team_a" for r in scenario_emulator.store.requests("^/v1/")
    )


# -- uploads ------------------------------------------------------------------------------------------------


def test_upload_in_parts_streams_to_presigned_urls_without_credentials(
    hook: ScenarioHook, scenario_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    payload = sample_video().read_bytes()
    monkeypatch.setattr(uploads, "PART_SIZE", len(payload) // 3 + 1)  # 3 parts
    asset_id = hook.upload_asset(io.BytesIO(payload), file_name="long.mov")
    asset = hook.get_asset(asset_id)
    assert (asset["kind"], asset["mimeType"], asset["properties"]["size"]) == (
        "video",
        "video/quicktime",
        len(payload),
    )
    assert (asset["properties"]["width"], asset["properties"]["height"]) == (1280, 720)
    parts = scenario_emulator.store.requests("^/_uploads/")
    assert [p["method"] for p in parts] == ["PUT"] * 3
    assert not any(p["authorization"] for p in parts)
    assert hook.session.get(asset["url"]).content == payload


def test_upload_from_a_local_path_and_an_object_storage_path(hook: ScenarioHook, tmp_path: object) -> None:
    from pathlib import Path

    from airflow.sdk import ObjectStoragePath

    from airflow_kling.media.samples import make_audio

    local = Path(make_audio(Path(str(tmp_path)) / "speech.wav", seconds=1))
    size = local.stat().st_size
    from_path = hook.get_asset(hook.upload_asset(local))
    from_store = hook.get_asset(hook.upload_asset(ObjectStoragePath(f"file://{local}")))
    for asset in (from_path, from_store):
        assert (asset["kind"], asset["properties"]["size"], asset["metadata"]["fileName"]) == (
            "audio",
            size,
            "speech.wav",
        )


def test_upload_part_refused_then_retried(hook: ScenarioHook, scenario_emulator: EmulatorServer) -> None:
    scenario_emulator.add_fault("^/_uploads/", status=503, times=1)
    asset_id = hook.upload_asset(sample_audio())
    assert hook.get_asset(asset_id)["properties"]["size"] == sample_audio().stat().st_size
    assert [p["status"] for p in scenario_emulator.store.requests("^/_uploads/")] == [503, 200]


def test_a_file_that_is_not_media_is_refused_by_the_api(
    hook: ScenarioHook, scenario_emulator: EmulatorServer
) -> None:
    with pytest.raises(
        ScenarioUploadError, match=r"Scenario refused the upload of 'fake\.mp4': Invalid video"
    ):
        hook.upload_asset(io.BytesIO(b"this is text, not a video"), file_name="fake.mp4")


@pytest.mark.parametrize(
    ("source", "message"),
    [(io.BytesIO(b""), "empty"), (io.BytesIO(b"abc"), "asset kind"), ("/nonexistent/file.mp4", "not a file")],
)
def test_bad_upload_sources(
    hook: ScenarioHook, source: object, message: str, scenario_emulator: EmulatorServer
) -> None:
    name = "x.mp4" if message != "asset kind" else "x.unknown"
    with pytest.raises(ScenarioUploadError, match=message):
        hook.upload_asset(source, file_name=name if not isinstance(source, str) else None)  # type: ignore[arg-type]
    assert scenario_emulator.store.requests("^/v1/uploads") == []


# -- retries ------------------------------------------------------------------------------------------------


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits the hook asks for between attempts, recorded (and not waited) instead of timed: a 2-core
    machine under load makes measured gaps flaky."""
    import airflow_kling.hooks.scenario as module

    delays: list[float] = []

    class RecordingTime:
        @staticmethod
        def sleep(seconds: float) -> None:
            delays.append(seconds)

    monkeypatch.setattr(module, "time", RecordingTime)
    return delays


def test_retry_after_seconds_is_honoured(
    hook: ScenarioHook, scenario_emulator: EmulatorServer, slept: list[float]
) -> None:
    video = hook.upload_asset(sample_video())
    scenario_emulator.add_fault("^/v1/assets/", status=429, headers={"Retry-After": "1"}, times=1)
    assert hook.get_asset(video)["id"] == video
    attempts = scenario_emulator.store.requests("^/v1/assets/")
    assert [a["status"] for a in attempts] == [429, 200]
    assert slept == [1.0]


def test_retry_after_ms_is_honoured(
    hook: ScenarioHook, scenario_emulator: EmulatorServer, slept: list[float]
) -> None:
    scenario_emulator.add_fault("^/v1/jobs$", status=503, headers={"retry-after-ms": "700"}, times=2)
    list(hook.list_jobs())
    attempts = scenario_emulator.store.requests("^/v1/jobs$")
    assert [a["status"] for a in attempts] == [503, 503, 200]
    assert slept == [0.7, 0.7]


def test_backoff_without_a_server_delay(
    hook: ScenarioHook, scenario_emulator: EmulatorServer, slept: list[float]
) -> None:
    scenario_emulator.add_fault("^/v1/jobs$", status=502, times=2)
    list(hook.list_jobs())
    assert len(scenario_emulator.store.requests("^/v1/jobs$")) == 3
    first, second = slept
    assert 0.375 <= first <= 0.5  # 0.5 s, shortened by up to a quarter of jitter
    assert 0.75 <= second <= 1.0


def test_retries_give_up_with_the_last_error(
    monkeypatch: pytest.MonkeyPatch, scenario_emulator: EmulatorServer
) -> None:
    use_connection(monkeypatch, scenario_emulator, max_retries=2)
    scenario_emulator.add_fault("^/v1/jobs/", status=503, headers={"retry-after-ms": "10"}, times=10)
    with pytest.raises(ScenarioAPIError) as raised:
        ScenarioHook().get_job("job_x")
    assert raised.value.status == 503
    assert len(scenario_emulator.store.requests("^/v1/jobs/")) == 3


def test_x_should_retry_false_stops_and_true_forces(
    hook: ScenarioHook, scenario_emulator: EmulatorServer
) -> None:
    scenario_emulator.add_fault("^/v1/jobs$", status=503, headers={"x-should-retry": "false"})
    with pytest.raises(ScenarioAPIError, match="503"):
        list(hook.list_jobs())
    scenario_emulator.add_fault(
        "^/v1/jobs$", status=400, headers={"x-should-retry": "true", "retry-after-ms": "10"}
    )
    assert list(hook.list_jobs()) == []
    assert [a["status"] for a in scenario_emulator.store.requests("^/v1/jobs$")] == [503, 400, 200]


def test_dropped_connection_on_a_read_is_retried(
    hook: ScenarioHook, scenario_emulator: EmulatorServer
) -> None:
    video = hook.upload_asset(sample_video())
    scenario_emulator.add_fault("^/v1/assets/", action="drop", times=1)
    assert hook.get_asset(video)["id"] == video
    assert len(scenario_emulator.store.requests("^/v1/assets/")) == 2


def test_connection_refused_is_retried_then_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(
        "AIRFLOW_CONN_SCENARIO_DEFAULT",
        json.dumps(
            {
                "conn_type": "scenario",
                "host": f"http://127.0.0.1:{port}/v1",
                "login": "k",
                "password": "s",
                "extra": {"max_retries": 1},
            }
        ),
    )
    with pytest.raises(ScenarioTransportError, match="after 2 attempts"):
        ScenarioHook().get_job("job_x")


# -- the ambiguous-submission rule --------------------------------------------------------------------------


def test_generate_500_is_not_retried(hook: ScenarioHook, scenario_emulator: EmulatorServer) -> None:
    video, audio = media_assets(hook)
    scenario_emulator.add_fault(GENERATE, status=500)
    with pytest.raises(ScenarioAmbiguousSubmitError, match="may have been created"):
        hook.run_model(MODEL, {"videoUrl": video, "audioFile": audio})
    assert len(scenario_emulator.store.requests(GENERATE)) == 1


def test_generate_read_timeout_is_not_retried(
    monkeypatch: pytest.MonkeyPatch, scenario_emulator: EmulatorServer
) -> None:
    use_connection(monkeypatch, scenario_emulator, timeout=0.3)
    hook = ScenarioHook()
    video, audio = media_assets(hook)
    scenario_emulator.add_fault(GENERATE, delay=1.0)
    with pytest.raises(ScenarioAmbiguousSubmitError, match="may have been created"):
        hook.run_model(MODEL, {"videoUrl": video, "audioFile": audio})
    time.sleep(1.0)  # the emulator still creates the job once the delay is over: exactly one
    assert len(scenario_emulator.store.requests(GENERATE)) == 1
    assert len(scenario_emulator.store.jobs) == 1


def test_generate_503_and_429_are_retried_once_safe(
    hook: ScenarioHook, scenario_emulator: EmulatorServer
) -> None:
    video, audio = media_assets(hook)
    scenario_emulator.add_fault(GENERATE, status=503, headers={"retry-after-ms": "50"})
    scenario_emulator.add_fault(GENERATE, status=429, headers={"retry-after-ms": "50"})
    job_id = hook.run_model(MODEL, {"videoUrl": video, "audioFile": audio})["job"]["jobId"]
    assert [r["status"] for r in scenario_emulator.store.requests(GENERATE)] == [503, 429, 200]
    assert list(scenario_emulator.store.jobs) == [job_id]


# -- errors -------------------------------------------------------------------------------------------------


def test_401_names_the_connection(monkeypatch: pytest.MonkeyPatch, scenario_emulator: EmulatorServer) -> None:
    conn = json.loads(scenario_emulator.connection_uri())
    conn["password"] = "wrong-secret"
    monkeypatch.setenv("AIRFLOW_CONN_SCENARIO_OTHER", json.dumps(conn))
    with pytest.raises(ScenarioAuthError, match="'scenario_other'") as raised:
        ScenarioHook("scenario_other").get_job("job_x")
    assert raised.value.status == 401
    assert len(scenario_emulator.store.requests()) == 1  # 401 is final


def test_400_carries_the_api_message(hook: ScenarioHook, scenario_emulator: EmulatorServer) -> None:
    video, _ = media_assets(hook)
    with pytest.raises(ScenarioAPIError, match="Give exactly one of audioFile") as raised:
        hook.run_model(MODEL, {"videoUrl": video})
    assert (raised.value.status, raised.value.method, raised.value.path) == (
        400,
        "POST",
        "/generate/custom/model_kling-lip-sync",
    )


def test_404_is_a_not_found_error(hook: ScenarioHook) -> None:
    with pytest.raises(ScenarioNotFoundError, match="job_missing"):
        hook.get_job("job_missing")


def test_ids_are_percent_encoded(hook: ScenarioHook, scenario_emulator: EmulatorServer) -> None:
    with pytest.raises(ScenarioNotFoundError):
        hook.get_job("a/b c")
    assert scenario_emulator.store.requests()[-1]["path"] == "/v1/jobs/a/b c"  # decoded by the server
    with pytest.raises(ValueError, match="non-empty id"):
        hook.get_job("")


def test_an_id_in_a_path_is_percent_encoded_as_urllib_does_whatever_its_characters() -> None:
    from urllib.parse import quote

    from airflow_kling.api.contract import api_path

    for job_id in ("job_AbC-1.2~x_y", "a/b c", "..", "job?x=1#f", "jöb", "%2F", "job_x\n", "-"):
        assert api_path("/jobs/{}/action", job_id) == f"/jobs/{quote(job_id, safe='')}/action"


def test_environment_credentials_without_a_connection(
    monkeypatch: pytest.MonkeyPatch, scenario_emulator: EmulatorServer
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_SCENARIO_DEFAULT")
    monkeypatch.setenv("SCENARIO_SDK_API_KEY", scenario_emulator.config.api_key)
    monkeypatch.setenv("SCENARIO_SDK_API_SECRET", scenario_emulator.config.api_secret)
    monkeypatch.setenv("SCENARIO_BASE_URL", scenario_emulator.base_url)
    assert ScenarioHook().test_connection()[0] is True


def test_missing_credentials_fail_before_any_request(
    monkeypatch: pytest.MonkeyPatch, scenario_emulator: EmulatorServer
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SCENARIO_DEFAULT",
        json.dumps({"conn_type": "scenario", "host": scenario_emulator.base_url}),
    )
    with pytest.raises(ScenarioCredentialsError, match="SCENARIO_SDK_API_SECRET"):
        ScenarioHook().get_job("job_x")
    assert scenario_emulator.store.requests() == []


def test_test_connection_reports_the_api_message(
    monkeypatch: pytest.MonkeyPatch, scenario_emulator: EmulatorServer
) -> None:
    assert ScenarioHook().test_connection() == (
        True,
        f"Connected to the Scenario API at {scenario_emulator.base_url}",
    )
    conn = json.loads(scenario_emulator.connection_uri())
    conn["login"] = "wrong"
    monkeypatch.setenv("AIRFLOW_CONN_SCENARIO_DEFAULT", json.dumps(conn))
    ok, message = ScenarioHook().test_connection()
    assert not ok
    assert "401" in message
    assert "Unauthorized" in message


def test_retries_are_logged(
    hook: ScenarioHook, scenario_emulator: EmulatorServer, captured_logs: Callable[[], str]
) -> None:
    scenario_emulator.add_fault("^/v1/jobs$", status=503, headers={"retry-after-ms": "10"})
    list(hook.list_jobs())
    assert "/jobs answered HTTP 503; retry 1 in 0.01 s" in captured_logs()


def test_httphooks_generic_calls_are_not_offered_unauthenticated(
    hook: ScenarioHook, scenario_emulator: EmulatorServer
) -> None:
    for call in (hook.run, hook.run_and_check, hook.run_with_advanced_retry):
        with pytest.raises(NotImplementedError, match=r"hook\.request"):
            call("jobs")
    assert scenario_emulator.store.requests() == []
    with pytest.raises(TypeError):
        ScenarioHook(auth_type=object)  # type: ignore[call-arg]  # accepted and ignored before


def test_wait_for_job_returns_the_job_once_it_succeeded(
    hook: ScenarioHook, inputs: dict[str, object], scenario_emulator: EmulatorServer
) -> None:
    job_id = hook.run_model(MODEL, inputs)["job"]["jobId"]
    job = hook.wait_for_job(job_id, timeout=60, poll_interval=0.2)
    assert (job["jobId"], job["status"]) == (job_id, "success")
    assert job["metadata"]["assetIds"] == [scenario_emulator.store.job(job_id).output_asset_id]


def test_wait_for_job_raises_the_jobs_failure_and_gives_up_at_its_timeout(
    hook: ScenarioHook, inputs: dict[str, object], scenario_emulator: EmulatorServer
) -> None:
    from airflow_kling.exceptions import ScenarioJobError

    scenario_emulator.plan_jobs("failure", error="No face found", hint="Show the face")
    failed = hook.run_model(MODEL, inputs)["job"]["jobId"]
    with pytest.raises(ScenarioJobError, match="No face found Hint: Show the face") as raised:
        hook.wait_for_job(failed, timeout=60, poll_interval=0.2)
    assert (raised.value.status, raised.value.job_id) == ("failure", failed)
    scenario_emulator.plan_jobs(seconds=60)
    slow = hook.run_model(MODEL, {**inputs, "text": "slow"})["job"]["jobId"]
    with pytest.raises(ScenarioJobError, match=f"Scenario job {slow} did not end by its deadline") as late:
        hook.wait_for_job(slow, timeout=0.5, poll_interval=0.2)
    assert late.value.status == "timeout"
    assert scenario_emulator.store.requests(f"^/v1/jobs/{slow}/action$") == []  # left running, not cancelled


def test_the_emulators_job_link_opens_a_page_a_person_reads(
    hook: ScenarioHook, inputs: dict[str, object], scenario_emulator: EmulatorServer
) -> None:
    import requests

    job_id = hook.run_model(MODEL, inputs)["job"]["jobId"]
    link = hook.config.job_web_url(job_id)
    assert link == f"{scenario_emulator.origin}/jobs/{job_id}"  # the emulator's own page, not Scenario's app
    page = requests.get(link, timeout=10)
    assert page.headers["Content-Type"].startswith("text/html")
    assert f"<h1>Scenario job {job_id}</h1>" in page.text
    assert "<th>Status</th>" in page.text


def test_every_method_that_returns_a_job_returns_the_job_object(
    hook: ScenarioHook, inputs: dict[str, object], scenario_emulator: EmulatorServer
) -> None:
    """``submit_job``, ``get_job`` and ``wait_for_job`` give one shape; ``run_model`` is the wire answer."""
    job = hook.submit_job(MODEL, inputs)
    assert set(job) >= {"jobId", "status", "metadata"}
    assert hook.get_job(job["jobId"]).keys() == job.keys()
    assert hook.wait_for_job(job["jobId"], timeout=60, poll_interval=0.2)["jobId"] == job["jobId"]
    assert len(scenario_emulator.store.paid_submissions()) == 1
