"""The emulator is only as useful as it is faithful: the official client, in strict mode, must accept it."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
import requests
from scenario_sdk import AuthenticationError, BadRequestError, Scenario

from airflow_kling.emulator import EmulatorServer, run_emulator
from airflow_kling.hooks.scenario import ScenarioHook
from airflow_kling.media.probing import probe
from tests.media_samples import sample_audio, sample_video, submit_text_job

MODEL = "model_kling-lip-sync"


@pytest.fixture
def client(scenario_emulator: EmulatorServer) -> Scenario:
    return Scenario(
        api_key=scenario_emulator.config.api_key,
        api_secret=scenario_emulator.config.api_secret,
        base_url=scenario_emulator.base_url,
        max_retries=0,
        _strict_response_validation=True,
    )


def sdk_upload(client: Scenario, data: bytes, file_name: str, kind: str, content_type: str) -> str:
    upload = client.uploads.create(
        kind=kind,
        file_name=file_name,
        content_type=content_type,
        file_size=len(data),
        parts=1,  # type: ignore[arg-type]
    ).upload
    assert upload.status == "pending"
    assert upload.parts is not None
    put = requests.put(upload.parts[0].url, data=data, timeout=10)  # presigned: no Authorization header
    assert put.status_code == 200
    completed = client.uploads.trigger_action(upload.id, action="complete").upload
    assert completed.status in ("validating", "complete")
    retrieved = client.uploads.retrieve(upload.id).upload
    while retrieved.status not in ("validated", "imported", "complete"):
        time.sleep(0.05)
        retrieved = client.uploads.retrieve(upload.id).upload
    assert retrieved.entity_id
    return retrieved.entity_id


def test_official_client_strict_round_trip(
    client: Scenario, scenario_emulator: EmulatorServer, tmp_path: Path
) -> None:
    video_bytes = sample_video().read_bytes()
    video = sdk_upload(client, video_bytes, "face.mp4", "video", "video/mp4")
    audio = sdk_upload(client, sample_audio().read_bytes(), "voice.mp3", "audio", "audio/mpeg")
    asset = client.assets.retrieve(video).asset
    assert (asset.kind, asset.mime_type, asset.properties.size) == ("video", "video/mp4", len(video_bytes))
    assert (asset.properties.width, asset.properties.height, asset.properties.duration) == (1280, 720, 3.0)

    estimate = client.generate.run_model(MODEL, body={"videoUrl": video, "audioFile": audio}, dry_run="api")
    assert estimate.creative_units_cost
    assert estimate.creative_units_cost > 0
    assert scenario_emulator.store.jobs == {}

    created = client.generate.run_model(MODEL, body={"videoUrl": video, "audioFile": audio})
    job_id = created.job.job_id
    deadline = time.monotonic() + 10
    job = client.jobs.retrieve(job_id).job
    while job.status not in ("success", "failure", "canceled") and time.monotonic() < deadline:
        time.sleep(0.1)
        job = client.jobs.retrieve(job_id).job
    assert job.status == "success"
    assert job.metadata.asset_ids
    output = client.assets.retrieve(job.metadata.asset_ids[0]).asset
    assert output.kind == "video"
    result = tmp_path / "result.mp4"
    result.write_bytes(requests.get(output.url, timeout=10).content)
    info = probe(result)  # a playable mp4: the input picture with the voice as its sound track
    assert (info.has_video, info.has_audio, info.width, info.height) == (True, True, 1280, 720)
    assert info.duration == pytest.approx(3.0, abs=0.1)
    listed = list(client.jobs.list())
    assert [j.job_id for j in listed] == [job_id]


def test_official_client_cancel_and_errors(client: Scenario, scenario_emulator: EmulatorServer) -> None:
    video = sdk_upload(client, sample_video().read_bytes(), "face.mp4", "video", "video/mp4")
    scenario_emulator.plan_jobs("stuck")
    job_id = client.generate.run_model(MODEL, body={"videoUrl": video, "text": "hello"}).job.job_id
    assert client.jobs.trigger_action(job_id, action="cancel").job.status == "canceled"
    with pytest.raises(BadRequestError):
        client.generate.run_model(MODEL, body={"videoUrl": video, "text": "x" * 121})
    with pytest.raises(AuthenticationError):
        Scenario(
            api_key="k", api_secret="wrong", base_url=scenario_emulator.base_url, max_retries=0
        ).jobs.retrieve(job_id)


def test_failed_job_carries_error_and_hint(scenario_emulator: EmulatorServer, client: Scenario) -> None:
    video = sdk_upload(client, sample_video().read_bytes(), "face.mp4", "video", "video/mp4")
    scenario_emulator.plan_jobs(
        "failure", error="No face detected", hint="Use a clip with a visible face", seconds=0.2
    )
    job_id = client.generate.run_model(MODEL, body={"videoUrl": video, "text": "hello"}).job.job_id
    time.sleep(0.3)
    job = client.jobs.retrieve(job_id).job
    assert (job.status, job.metadata.error, job.metadata.hint) == (
        "failure",
        "No face detected",
        "Use a clip with a visible face",
    )
    assert job.billing is not None
    assert job.billing.cu_cost == 0


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"text": "hi"}, "videoUrl is required"),
        ({"videoUrl": "{video}"}, "Give exactly one of audioFile"),
        ({"videoUrl": "{video}", "text": "hi", "audioFile": "{video}"}, "Give exactly one of audioFile"),
        ({"videoUrl": "{video}", "audioFile": "{video}"}, "audioFile must be an asset of kind audio"),
        (
            {"videoUrl": "{video}", "text": "hi", "voiceSpeed": 2.5},
            "voiceSpeed must be at most 2, got 2.5",
        ),
        (
            {"videoUrl": "{video}", "text": "hi", "voiceSpeed": 1.25},
            "voiceSpeed must be a multiple of 0.1 from 0.8, got 1.25",
        ),
        ({"videoUrl": "{video}", "text": "hi", "speed": 1}, "'speed': no such input of this model"),
        ({"videoUrl": "asset_missing", "text": "hi"}, "videoUrl: no asset asset_missing"),
    ],
)
def test_lipsync_inputs_are_validated(
    client: Scenario, scenario_emulator: EmulatorServer, inputs: dict[str, object], message: str
) -> None:
    video = sdk_upload(client, sample_video().read_bytes(), "face.mp4", "video", "video/mp4")
    body = {key: (video if value == "{video}" else value) for key, value in inputs.items()}
    with pytest.raises(BadRequestError, match=message):
        client.generate.run_model(MODEL, body=body)


def test_presigned_urls_refuse_credentials_and_expire() -> None:
    with run_emulator(url_ttl=1) as emulator:
        auth = (
            "Basic "
            + base64.b64encode(f"{emulator.config.api_key}:{emulator.config.api_secret}".encode()).decode()
        )
        headers = {"Authorization": auth}
        created = requests.post(
            f"{emulator.base_url}/uploads",
            headers=headers,
            timeout=10,
            json={
                "kind": "text",
                "fileName": "a.txt",
                "contentType": "text/plain",
                "fileSize": 3,
                "parts": 1,
            },
        ).json()["upload"]
        part_url = created["parts"][0]["url"]
        assert requests.put(part_url, data=b"abc", headers=headers, timeout=10).status_code == 400
        assert requests.put(part_url + "0", data=b"abc", timeout=10).status_code == 403
        assert requests.put(part_url, data=b"abc", timeout=10).status_code == 200
        requests.post(
            f"{emulator.base_url}/uploads/{created['id']}/action",
            json={"action": "complete"},
            headers=headers,
            timeout=10,
        )
        asset_id = requests.get(
            f"{emulator.base_url}/uploads/{created['id']}", headers=headers, timeout=10
        ).json()["upload"]["entityId"]
        url = requests.get(f"{emulator.base_url}/assets/{asset_id}", headers=headers, timeout=10).json()[
            "asset"
        ]["url"]
        assert requests.get(url, headers=headers, timeout=10).status_code == 400
        assert requests.get(url, timeout=10).content == b"abc"
        time.sleep(2.1)
        expired = requests.get(url, timeout=10)
        assert expired.status_code == 403
        assert "expired" in expired.text


def test_missing_or_wrong_auth_is_401(scenario_emulator: EmulatorServer) -> None:
    assert requests.get(f"{scenario_emulator.base_url}/jobs", timeout=10).status_code == 401
    wrong = requests.get(f"{scenario_emulator.base_url}/jobs", auth=("emulator-key", "bad"), timeout=10)
    assert wrong.status_code == 401


def test_admin_api_injects_faults_and_plans_jobs(scenario_emulator: EmulatorServer) -> None:
    admin = f"{scenario_emulator.origin}/_emulator"
    auth = (scenario_emulator.config.api_key, scenario_emulator.config.api_secret)
    assert requests.post(
        f"{admin}/faults", json={"path": "^/v1/jobs$", "status": 503, "times": 1}, timeout=10
    ).ok
    assert requests.get(f"{scenario_emulator.base_url}/jobs", auth=auth, timeout=10).status_code == 503
    assert requests.get(f"{scenario_emulator.base_url}/jobs", auth=auth, timeout=10).status_code == 200
    assert requests.post(f"{admin}/faults", json={"pth": "x"}, timeout=10).status_code == 400
    assert requests.post(f"{admin}/jobs/next", json={"outcome": "stuck"}, timeout=10).ok
    assert scenario_emulator.store.next_outcomes[0]["outcome"] == "stuck"
    logged = requests.get(f"{admin}/requests", timeout=10).json()["requests"]
    assert [entry["status"] for entry in logged] == [503, 200]


def test_jobs_list_honours_created_after_as_the_api_does(scenario_emulator: EmulatorServer) -> None:
    from datetime import UTC, datetime

    auth = (scenario_emulator.config.api_key, scenario_emulator.config.api_secret)
    before = submit_text_job(scenario_emulator)
    since = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    time.sleep(0.01)
    after = submit_text_job(scenario_emulator)
    listed = requests.get(
        f"{scenario_emulator.base_url}/jobs", params={"createdAfter": since}, auth=auth, timeout=10
    ).json()["jobs"]
    assert [job["jobId"] for job in listed] == [after]
    assert before != after
    assert listed[0]["metadata"]["input"]["text"] == "hi"
    clash = requests.get(
        f"{scenario_emulator.base_url}/jobs",
        params={"createdAfter": since, "status": "success"},
        auth=auth,
        timeout=10,
    )
    assert clash.status_code == 400
    assert "updatedAfter" in clash.json()["message"]


def test_storage_origin_points_signed_urls_elsewhere(scenario_emulator: EmulatorServer) -> None:
    admin = f"{scenario_emulator.origin}/_emulator"
    assert requests.post(f"{admin}/settings", json={"storage_origin": "http://127.0.0.1:9"}, timeout=10).ok
    upload = ScenarioHook().request(
        "POST",
        "/uploads",
        body={"kind": "video", "fileName": "a.mp4", "contentType": "video/mp4", "fileSize": 10, "parts": 1},
    )[1]["upload"]
    assert upload["parts"][0]["url"].startswith("http://127.0.0.1:9/_uploads/")


def test_command_line_serves_until_stopped() -> None:
    import socket

    from airflow_kling.emulator import spawn_emulator

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = spawn_emulator(port, api_key="k", api_secret="s", job_seconds=2)
    try:
        answer = requests.get(f"http://127.0.0.1:{port}/v1/jobs", auth=("k", "s"), timeout=5)
        assert (answer.status_code, answer.json()) == (200, {"jobs": []})
        assert (
            requests.get(f"http://127.0.0.1:{port}/v1/jobs", auth=("k", "wrong"), timeout=5).status_code
            == 401
        )
    finally:
        process.terminate()
        assert process.wait(timeout=10) is not None
