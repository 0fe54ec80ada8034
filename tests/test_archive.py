"""Archiving generated videos: local disk and S3 (moto on loopback), faults from the emulator, checksums,
manifests, idempotence and atomicity."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow.sdk.execution_time.context import OutletEventAccessors

from airflow_kling.emulator import EmulatorServer
from airflow_kling.exceptions import ScenarioDownloadError
from airflow_kling.files.archive import archive_assets
from airflow_kling.files.storage import storage_path
from airflow_kling.hooks.scenario import ScenarioHook
from airflow_kling.operators.assets import ARCHIVED_OUTPUTS, ScenarioArchiveAssetsOperator
from tests.media_samples import output_assets, sample_audio, sample_video

# On every line: ObjectStoragePath and the amazon provider follow the line.
pytestmark = pytest.mark.every_line


class RecordingTaskInstance:
    """What the operator pushes to XCom besides its return value, kept to be looked at."""

    def __init__(self) -> None:
        self.xcoms: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.xcoms[key] = value


def finished_job(emulator: EmulatorServer) -> tuple[str, str]:
    """A succeeded lipsync job and its output asset id."""
    hook = ScenarioHook()
    video, audio = hook.upload_asset(sample_video()), hook.upload_asset(sample_audio())
    emulator.plan_jobs(seconds=0.05)
    job_id = hook.run_model("model_kling-lip-sync", {"videoUrl": video, "audioFile": audio})["job"]["jobId"]
    (asset_id,) = output_assets(job_id)
    return job_id, asset_id


def emulator_file(emulator: EmulatorServer, asset_id: str) -> bytes:
    return emulator.store.assets[asset_id].path.read_bytes()


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*partial*"))


MODEL_IDS = [
    ("flux.1-dev", "flux.1-dev"),  # the contract gives model ids no shape: not only ``model_...``
    ("model_kling-lip-sync", "model_kling-lip-sync"),
    ("model_x\n", None),
    ("../../etc/passwd", None),
    ("a b", None),
    ("m" * 129, None),
    (7, None),
]
"""A model id as an answer or an XCom may give it, and what is kept of it (:func:`is_model_id`)."""


@pytest.mark.parametrize(("answered", "kept"), MODEL_IDS)
def test_the_manifest_names_the_model_only_by_an_id_of_a_model_ids_shape(
    scenario_emulator: EmulatorServer, tmp_path: Path, answered: object, kept: str | None
) -> None:
    job_id, asset_id = finished_job(scenario_emulator)
    hook = ScenarioHook()
    asset = hook.get_asset(asset_id)
    answer = {"asset": {**asset, "metadata": {**asset["metadata"], "modelId": answered}}}
    scenario_emulator.add_fault(f"^/v1/assets/{asset_id}$", method="GET", status=200, body=answer)
    archive_assets(hook, [asset_id], storage_path(tmp_path))
    assert json.loads((tmp_path / job_id / "manifest.json").read_text())["model_id"] == kept


def test_archive_to_local_disk_with_a_manifest(scenario_emulator: EmulatorServer, tmp_path: Path) -> None:
    job_id, asset_id = finished_job(scenario_emulator)
    events, ti = OutletEventAccessors(), RecordingTaskInstance()
    uris = ScenarioArchiveAssetsOperator(task_id="archive", job_id=job_id, destination=str(tmp_path)).execute(
        {"outlet_events": events, "ti": ti}  # type: ignore[typeddict-item]
    )
    target = tmp_path / job_id / f"{asset_id}.mp4"
    assert uris == [f"file://{target}"]
    assert events[ARCHIVED_OUTPUTS].extra == {"uris": uris, "job_ids": [job_id]}  # for downstream DAGs
    content = emulator_file(scenario_emulator, asset_id)
    assert target.read_bytes() == content
    manifest = json.loads((tmp_path / job_id / "manifest.json").read_text())
    assert manifest["job_id"] == job_id
    assert manifest["model_id"] == "model_kling-lip-sync"
    assert set(manifest["inputs"]) == {"videoUrl", "audioFile"}
    assert manifest["output_asset_ids"] == [asset_id]
    assert manifest["creative_units_cost"] == 30
    # Each file input by the name of the file it was uploaded from (the preview and the review show it).
    inputs = scenario_emulator.store.jobs[job_id].inputs
    assert manifest["sources"] == [
        {"input": "videoUrl", "asset_id": inputs["videoUrl"], "name": sample_video().name},
        {"input": "audioFile", "asset_id": inputs["audioFile"], "name": sample_audio().name},
    ]
    (entry,) = manifest["files"]
    assert entry == {
        "asset_id": asset_id,
        "uri": f"file://{target}",
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "mime_type": "video/mp4",
    }
    # What the UI preview finds the video by: the same file, and where its manifest is.
    assert ti.xcoms["scenario_archive"] == {
        "conn_id": "scenario_default",
        "storage_conn_id": None,
        "files": [
            {**entry, "job_id": job_id, "manifest_uri": f"file://{tmp_path / job_id / 'manifest.json'}"}
        ],
    }
    text = json.dumps(manifest)
    assert "signature=" not in text
    assert scenario_emulator.config.api_secret not in text
    assert not any(r["authorization"] for r in scenario_emulator.store.requests("^/_files/"))
    assert leftovers(tmp_path) == []


def test_the_manifest_goes_beside_the_files_whatever_the_template(
    scenario_emulator: EmulatorServer, tmp_path: Path
) -> None:
    job_id, asset_id = finished_job(scenario_emulator)
    (archived,) = archive_assets(
        ScenarioHook(), [asset_id], storage_path(tmp_path), file_name_template="{asset_id}/{job_id}.{ext}"
    )
    assert archived.record["uri"] == f"file://{tmp_path / asset_id / job_id}.mp4"
    manifest = json.loads((tmp_path / asset_id / "manifest.json").read_text())
    assert manifest["job_id"] == job_id
    assert manifest["files"][0]["uri"] == archived.record["uri"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [asset_id]  # nothing written to a made-up folder


def test_rerun_skips_and_a_different_file_is_refused(
    scenario_emulator: EmulatorServer, tmp_path: Path
) -> None:
    job_id, asset_id = finished_job(scenario_emulator)
    hook = ScenarioHook()
    destination = storage_path(tmp_path)
    archive_assets(hook, [asset_id], destination)
    downloads = len(scenario_emulator.store.requests("^/_files/"))
    (again,) = archive_assets(hook, [asset_id], destination)
    assert again.skipped
    assert len(scenario_emulator.store.requests("^/_files/")) == downloads  # nothing downloaded again
    target = tmp_path / job_id / f"{asset_id}.mp4"
    target.write_bytes(b"someone else's file")
    with pytest.raises(ScenarioDownloadError, match=r"different file is already at .* overwrite=True"):
        archive_assets(hook, [asset_id], destination)
    assert target.read_bytes() == b"someone else's file"
    (replaced,) = archive_assets(hook, [asset_id], destination, overwrite=True)
    assert not replaced.skipped
    assert target.read_bytes() == emulator_file(scenario_emulator, asset_id)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("fault", "statuses"),
    [
        ({"status": 403, "body": {"message": "Request has expired"}}, [403, 200]),
        ({"action": "truncate"}, [200, 206]),
        ({"status": 503, "times": 3, "headers": {"retry-after-ms": "20"}}, [503, 503, 503, 200]),
        ({"action": "drop", "times": 2}, [None, None, 200]),
    ],
)
def test_faults_end_in_a_complete_verified_file(
    scenario_emulator: EmulatorServer, tmp_path: Path, fault: dict[str, object], statuses: list[int | None]
) -> None:
    job_id, asset_id = finished_job(scenario_emulator)
    scenario_emulator.add_fault("^/_files/", **fault)  # type: ignore[arg-type]
    (archived,) = archive_assets(ScenarioHook(), [asset_id], storage_path(tmp_path))
    content = emulator_file(scenario_emulator, asset_id)
    assert (tmp_path / job_id / f"{asset_id}.mp4").read_bytes() == content
    assert archived.record["sha256"] == hashlib.sha256(content).hexdigest()
    assert [r["status"] for r in scenario_emulator.store.requests("^/_files/")] == statuses
    if fault.get("status") == 403:
        assert len(scenario_emulator.store.requests("/download$")) == 1  # a fresh signed URL was asked for
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("answer", "statuses"),
    [
        # the resume's answer is the whole file: read from zero
        ("ignore-range", [200, 200]),
        # a part from byte 0 for a resume from the middle: the file asked again, whole
        ("wrong-range", [200, 206, 200]),
    ],
)
def test_a_resume_answered_with_other_bytes_starts_the_file_again(
    scenario_emulator: EmulatorServer, tmp_path: Path, answer: str, statuses: list[int]
) -> None:
    job_id, asset_id = finished_job(scenario_emulator)
    scenario_emulator.add_fault("^/_files/", action="truncate")  # half the file, then the connection drops
    scenario_emulator.add_fault("^/_files/", action=answer)  # the resume (Range: bytes=half-) meets this
    (archived,) = archive_assets(ScenarioHook(), [asset_id], storage_path(tmp_path))
    content = emulator_file(scenario_emulator, asset_id)
    assert (tmp_path / job_id / f"{asset_id}.mp4").read_bytes() == content
    assert archived.record["size"] == len(content)
    assert archived.record["sha256"] == hashlib.sha256(content).hexdigest()
    requests = scenario_emulator.store.requests("^/_files/")
    assert [r["status"] for r in requests] == statuses
    assert leftovers(tmp_path) == []


def test_an_expired_url_is_renewed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_kling.emulator import run_emulator

    with run_emulator(url_ttl=1, job_seconds=0.05) as emulator:
        monkeypatch.setenv("AIRFLOW_CONN_SCENARIO_DEFAULT", emulator.connection_uri())
        _, asset_id = finished_job(emulator)
        hook = ScenarioHook()
        asset = hook.get_asset(asset_id)
        time.sleep(2.1)  # the URL in hand has expired

        from airflow_kling.files.downloads import download_asset

        target = tmp_path / "out.mp4"
        result, sink = download_asset(hook, asset, lambda: target.open("wb"))
        sink.close()
        assert target.read_bytes() == emulator_file(emulator, asset_id)
        assert result.size == target.stat().st_size
        assert [r["status"] for r in emulator.store.requests("^/_files/")] == [403, 200]


def test_a_download_that_never_completes_fails_cleanly(
    scenario_emulator: EmulatorServer, tmp_path: Path
) -> None:
    job_id, asset_id = finished_job(scenario_emulator)
    scenario_emulator.add_fault("^/_files/", action="truncate", times=100)
    scenario_emulator.store.config.url_ttl = 3600
    with pytest.raises(ScenarioDownloadError, match="not downloaded completely after 6 attempts"):
        archive_assets(ScenarioHook(), [asset_id], storage_path(tmp_path))
    assert not (tmp_path / job_id / f"{asset_id}.mp4").exists()
    assert leftovers(tmp_path) == []


def test_a_killed_download_leaves_nothing_under_the_final_name(
    scenario_emulator: EmulatorServer, tmp_path: Path
) -> None:
    job_id, asset_id = finished_job(scenario_emulator)
    scenario_emulator.add_fault("^/_files/", delay=5)
    code = (
        "import sys; from airflow_kling.files.archive import archive_assets; from airflow_kling.hooks.scenario import "
        "ScenarioHook; from airflow_kling.files.storage import storage_path; "
        "archive_assets(ScenarioHook(), [sys.argv[1]], storage_path(sys.argv[2]))"
    )
    process = subprocess.Popen([sys.executable, "-c", code, asset_id, str(tmp_path)])
    deadline = time.monotonic() + 30
    while not scenario_emulator.store.requests("^/_files/") and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / job_id / f"{asset_id}.mp4").exists()
    assert leftovers(tmp_path)  # the killed try's partial file is there, under another name...
    scenario_emulator.store.faults.clear()
    archive_assets(ScenarioHook(), [asset_id], storage_path(tmp_path))
    assert (tmp_path / job_id / f"{asset_id}.mp4").read_bytes() == emulator_file(scenario_emulator, asset_id)
    assert leftovers(tmp_path) == []  # ...and the next try cleans it up


# -- S3, for real, through ObjectStoragePath ------------------------------------------------------------------


@pytest.fixture
def s3_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(
        "AIRFLOW_CONN_S3_TEST",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
            }
        ),
    )
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="archive")
    try:
        yield endpoint
    finally:
        server.stop()


def test_archive_to_s3(scenario_emulator: EmulatorServer, s3_bucket: str) -> None:
    import boto3

    job_id, asset_id = finished_job(scenario_emulator)
    scenario_emulator.add_fault("^/_files/", action="truncate")
    uris = ScenarioArchiveAssetsOperator(
        task_id="archive", asset_ids=[asset_id], destination="s3://archive/lipsync", storage_conn_id="s3_test"
    ).execute({"outlet_events": OutletEventAccessors(), "ti": RecordingTaskInstance()})  # type: ignore[typeddict-item]
    assert uris == [f"s3://archive/lipsync/{job_id}/{asset_id}.mp4"]
    s3 = boto3.client("s3", endpoint_url=s3_bucket, region_name="us-east-1")
    keys = sorted(item["Key"] for item in s3.list_objects_v2(Bucket="archive")["Contents"])
    assert keys == [
        f"lipsync/{job_id}/{asset_id}.mp4",
        f"lipsync/{job_id}/manifest.json",
    ]  # no partial object
    content = emulator_file(scenario_emulator, asset_id)
    assert s3.get_object(Bucket="archive", Key=keys[0])["Body"].read() == content
    manifest = json.loads(s3.get_object(Bucket="archive", Key=keys[1])["Body"].read())
    assert manifest["files"][0]["sha256"] == hashlib.sha256(content).hexdigest()
    downloads = len(scenario_emulator.store.requests("^/_files/"))
    destination = storage_path("s3://archive/lipsync", "s3_test")
    (again,) = archive_assets(ScenarioHook(), [asset_id], destination)
    assert again.skipped
    assert len(scenario_emulator.store.requests("^/_files/")) == downloads
    s3.put_object(Bucket="archive", Key=keys[0], Body=b"someone else's video")
    with pytest.raises(ScenarioDownloadError, match="different file is already at"):
        archive_assets(ScenarioHook(), [asset_id], destination)
    assert s3.get_object(Bucket="archive", Key=keys[0])["Body"].read() == b"someone else's video"
    (replaced,) = archive_assets(ScenarioHook(), [asset_id], destination, overwrite=True)
    assert not replaced.skipped
    assert s3.get_object(Bucket="archive", Key=keys[0])["Body"].read() == content
    assert sorted(item["Key"] for item in s3.list_objects_v2(Bucket="archive")["Contents"]) == keys


def everything_under(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("parent_job_id", "../../outside/evil", "metadata.parentJobId"),
        ("parent_job_id", "/tmp/kling-absolute-evil", "metadata.parentJobId"),
        ("parent_job_id", "job_x/../../../evil", "metadata.parentJobId"),
        ("mime_type", "x/py", "media type 'x/py'"),
        ("mime_type", "text/html", "media type 'text/html'"),
        ("id", "asset_someone-elses", "answered another asset"),
    ],
)
def test_hostile_answers_write_nothing_and_fail_the_task_naming_the_value(
    scenario_emulator: EmulatorServer, tmp_path: Path, field: str, value: str, named: str
) -> None:
    from airflow_kling.version_compat import AirflowFailException

    _, asset_id = finished_job(scenario_emulator)
    good_id, _ = finished_job(scenario_emulator)  # archived first: a hostile second answer must stop both
    (good_asset,) = output_assets(good_id)
    setattr(scenario_emulator.store.assets[asset_id], field, value)  # what the API answers for the asset
    destination = tmp_path / "archive"
    operator = ScenarioArchiveAssetsOperator(
        task_id="archive", asset_ids=[good_asset, asset_id], destination=str(destination)
    )
    with pytest.raises(AirflowFailException) as raised:
        operator.execute({"outlet_events": OutletEventAccessors(), "ti": RecordingTaskInstance()})  # type: ignore[typeddict-item]
    assert named in str(raised.value)
    assert value[:40] in str(raised.value) or field == "id"
    assert everything_under(destination) == []  # not even the good asset: nothing half-written
    assert everything_under(tmp_path) == ["archive"]
    assert not Path("/tmp/kling-absolute-evil").exists()
    assert scenario_emulator.store.requests("^/_files/") == []  # checked before any download


@pytest.mark.parametrize("name", ["../../etc/passwd", "face.mp4\nFAKE: approved", "x" * 121, ""])
def test_a_source_name_of_another_shape_is_left_out_of_the_manifest(
    scenario_emulator: EmulatorServer, tmp_path: Path, name: str
) -> None:
    """The API names the file an input came from; a name that is not a plain file name is not kept."""
    job_id, asset_id = finished_job(scenario_emulator)
    video = scenario_emulator.store.jobs[job_id].inputs["videoUrl"]
    scenario_emulator.store.assets[video].file_name = name
    archive_assets(ScenarioHook(), [asset_id], storage_path(str(tmp_path)))
    manifest = json.loads((tmp_path / job_id / "manifest.json").read_text())
    assert manifest["sources"][0] == {"input": "videoUrl", "asset_id": video}
    assert manifest["sources"][1]["name"] == sample_audio().name


@pytest.mark.parametrize("asset_id", ["../../evil", "asset_x/../../y", "asset_ok.py", ""])
def test_asset_ids_from_an_xcom_are_checked_before_any_request(
    scenario_emulator: EmulatorServer, tmp_path: Path, asset_id: str
) -> None:
    from airflow_kling.version_compat import AirflowFailException

    operator = ScenarioArchiveAssetsOperator(
        task_id="archive", asset_ids=[asset_id], destination=str(tmp_path)
    )
    with pytest.raises(AirflowFailException, match="asset"):
        operator.execute({"outlet_events": OutletEventAccessors(), "ti": RecordingTaskInstance()})  # type: ignore[typeddict-item]
    assert scenario_emulator.store.requests("^/v1/assets") == []
    assert everything_under(tmp_path) == []


@pytest.mark.parametrize("metadata", [["asset_a"], "text"])
def test_an_asset_whose_metadata_is_not_an_object_is_refused(
    scenario_emulator: EmulatorServer, tmp_path: Path, metadata: object
) -> None:
    from airflow_kling.exceptions import ScenarioResponseError

    _, asset_id = finished_job(scenario_emulator)
    lying = {**ScenarioHook().get_asset(asset_id), "metadata": metadata}
    scenario_emulator.add_fault(f"^/v1/assets/{asset_id}$", method="GET", status=200, body={"asset": lying})
    with pytest.raises(ScenarioResponseError, match=f"Asset {asset_id}: metadata must be an object"):
        archive_assets(ScenarioHook(), [asset_id], storage_path(tmp_path))
    assert scenario_emulator.store.requests("^/_files/") == []
    assert everything_under(tmp_path) == []


@pytest.mark.parametrize(
    "stored",
    ["[1, 2]", '{"files": {"asset_a": 1}}', '{"files": [1, "x"]}', '{"files": []}' + " " * (5 * 1024 * 1024)],
    ids=["a list", "files an object", "entries not objects", "over 1 MiB"],
)
def test_a_manifest_someone_else_wrote_says_nothing_and_the_file_is_compared(
    scenario_emulator: EmulatorServer, tmp_path: Path, stored: str
) -> None:
    job_id, asset_id = finished_job(scenario_emulator)
    hook = ScenarioHook()
    archive_assets(hook, [asset_id], storage_path(tmp_path))
    manifest = tmp_path / job_id / "manifest.json"
    manifest.write_text(stored)
    downloads = len(scenario_emulator.store.requests("^/_files/"))
    lying = {**hook.get_asset(asset_id), "properties": ["not", "an", "object"]}  # no size to compare either
    scenario_emulator.add_fault(f"^/v1/assets/{asset_id}$", method="GET", status=200, body={"asset": lying})
    (again,) = archive_assets(hook, [asset_id], storage_path(tmp_path))
    assert again.skipped  # downloaded and compared: the same bytes
    assert len(scenario_emulator.store.requests("^/_files/")) == downloads + 1
    assert (tmp_path / job_id / f"{asset_id}.mp4").read_bytes() == emulator_file(scenario_emulator, asset_id)
    assert [entry["asset_id"] for entry in json.loads(manifest.read_text())["files"]] == [asset_id]


BAD_TEMPLATES = [
    ("../{asset_id}.{ext}", "not a relative path"),
    ("/abs/{asset_id}.{ext}", "not a relative path"),
    ("{job_id}//{asset_id}.{ext}", "not a relative path"),
    ("{job}/{asset_id}.{ext}", r"takes only .*got \{job\}"),
    ("{asset_id.__class__}.{ext}", r"got \{asset_id.__class__\}"),  # no attribute of a value
    ("{asset_id[0]}.{ext}", r"got \{asset_id\[0\]\}"),
    ("{asset_id!r}.{ext}", r"got \{asset_id!r\}"),
    ("{asset_id:>40}.{ext}", r"got \{asset_id:>40\}"),
    ("{}.{ext}", r"got \{\}"),
    ("{asset_id.{ext}", "not a format string"),
]


@pytest.mark.parametrize(("template", "error"), BAD_TEMPLATES)
def test_a_literal_file_name_template_is_checked_at_dag_parse(template: str, error: str) -> None:
    from airflow_kling.exceptions import ScenarioValidationError

    with pytest.raises(ScenarioValidationError, match=f"file_name_template .*{error}"):
        ScenarioArchiveAssetsOperator(
            task_id="archive", asset_ids=["asset_x"], destination="/tmp/archive", file_name_template=template
        )


def test_a_templated_file_name_template_is_checked_when_rendered(
    scenario_emulator: EmulatorServer, tmp_path: Path
) -> None:
    from airflow_kling.version_compat import AirflowFailException

    operator = ScenarioArchiveAssetsOperator(
        task_id="archive",
        asset_ids=["asset_x"],
        destination=str(tmp_path),
        file_name_template="{{ params.folder }}/{asset_id}.{ext}",
    )  # a run decides it: not checked at parse
    _, asset_id = finished_job(scenario_emulator)
    operator.asset_ids = [asset_id]
    operator.file_name_template = "{asset_id.__class__}/{asset_id}.{ext}"  # as a run might render it
    with pytest.raises(AirflowFailException, match=r"file_name_template .*got \{asset_id.__class__\}"):
        operator.execute({"outlet_events": OutletEventAccessors(), "ti": RecordingTaskInstance()})  # type: ignore[typeddict-item]
    assert scenario_emulator.store.requests("^/_files/") == []  # refused before any download
    assert everything_under(tmp_path) == []


def test_a_file_name_template_that_leaves_the_destination_is_refused(
    scenario_emulator: EmulatorServer, tmp_path: Path
) -> None:
    from airflow_kling.exceptions import ScenarioValidationError

    _, asset_id = finished_job(scenario_emulator)
    destination = tmp_path / "archive"
    for template in ("../{asset_id}.{ext}", "/abs/{asset_id}.{ext}", "{job_id}//{asset_id}.{ext}"):
        with pytest.raises(ScenarioValidationError, match="file_name_template"):
            archive_assets(ScenarioHook(), [asset_id], storage_path(destination), file_name_template=template)
    assert everything_under(tmp_path) == []
