"""The review step's own files work, on real files: what an archive task's XCom names is checked against
the location the DAG archives to before anything is read, a published copy is the archived file or
nothing, and the verdict goes into the manifest whole."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from airflow_kling.emulator import EmulatorServer
from airflow_kling.exceptions import ScenarioValidationError
from airflow_kling.files.publication import (
    checked_files,
    publish_copies,
    record_review,
    reviewable_manifests,
    source_names,
)

JOB = "job_abc123"


def archived(tmp_path: Path, data: bytes = b"\x00\x00\x00\x18ftypmp42 a video") -> dict[str, Any]:
    """A clip as the archive task leaves it: the file, its manifest, and the XCom record of both."""
    folder = tmp_path / "archive" / JOB
    folder.mkdir(parents=True)
    video = folder / "asset_out1.mp4"
    video.write_bytes(data)
    (folder / "manifest.json").write_text(json.dumps({"job_id": JOB, "files": []}))
    return {
        "asset_id": "asset_out1",
        "job_id": JOB,
        "uri": f"file://{video}",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "mime_type": "video/mp4",
        "manifest_uri": f"file://{folder / 'manifest.json'}",
    }


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("uri", "file:///etc/passwd", "under none of the allowed roots"),
        ("manifest_uri", "file:///tmp/elsewhere/manifest.json", "under none of the allowed roots"),
        ("uri", "http://169.254.169.254/latest/meta-data", "under none of the allowed roots"),
        ("job_id", "../../outside", "of another shape"),
        ("uri", "ARCHIVE/job_abc123/.hidden", "not a plain name"),
        ("manifest_uri", "ARCHIVE/job_abc123/evil.json", "must be the manifest.json beside its file"),
        ("manifest_uri", "ARCHIVE/job_other1/manifest.json", "must be the manifest.json beside its file"),
        ("asset_id", "asset_../../x", "of another shape"),
        # what the reviewer's text shows: a size holding markdown put a heading and a link into it
        (
            "size",
            "1 bytes)\n\n# Approve at once\n[here](https://elsewhere.example",
            "size must be a whole number",
        ),
        ("size", True, "size must be a whole number"),
        ("size", -1, "size must be a whole number"),
        ("sha256", "`](https://elsewhere.example)", "sha256 must be 64 hexadecimal characters"),
        ("sha256", "A" * 64, "sha256 must be 64 hexadecimal characters"),
        ("mime_type", "text/html", "mime_type must be one the archive writes"),
    ],
)
def test_a_hostile_archive_record_is_refused_before_anything_is_read(
    tmp_path: Path, field: str, value: Any, named: str
) -> None:
    record = archived(tmp_path)
    other = tmp_path / "archive" / "job_other1"
    other.mkdir(parents=True)
    (other / "manifest.json").write_text("{}")  # another clip's manifest, which a review must leave alone
    record[field] = (
        value.replace("ARCHIVE", f"file://{tmp_path / 'archive'}") if isinstance(value, str) else value
    )
    with pytest.raises(ScenarioValidationError) as refused:
        checked_files([record], str(tmp_path / "archive"), "destination")
    assert named in str(refused.value)
    assert "destination=" in str(refused.value)


def test_a_link_out_of_the_archive_is_out_of_it(tmp_path: Path) -> None:
    record = archived(tmp_path)
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"secret")
    link = tmp_path / "archive" / JOB / "asset_link.mp4"
    link.symlink_to(outside)
    record["uri"] = f"file://{link}"
    with pytest.raises(ScenarioValidationError, match="under none of the allowed roots"):
        checked_files([record], str(tmp_path / "archive"), "destination")


def test_an_approved_clip_is_published_verified_with_its_manifest(tmp_path: Path) -> None:
    record = archived(tmp_path)
    files = checked_files([record], str(tmp_path / "archive"), "destination")
    record_review(
        record["manifest_uri"], JOB, {"decision": "approved", "by": "ana", "at": "now", "comment": None}
    )
    (uri,) = publish_copies(files, str(tmp_path / "published"))
    copy = tmp_path / "published" / JOB / "asset_out1.mp4"
    assert uri == f"file://{copy}"
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == record["sha256"]
    manifest = json.loads((tmp_path / "published" / JOB / "manifest.json").read_text())
    assert manifest["review"]["by"] == "ana"
    assert manifest["job_id"] == JOB  # the archive's manifest, whole, with its verdict
    assert publish_copies(files, str(tmp_path / "published")) == [uri]  # again: the same, left as it is


@pytest.mark.parametrize(
    ("stored", "why"),
    [
        (b"[]", "is not a JSON object of at most 1 MiB"),
        (b"{not json", "is not a JSON object of at most 1 MiB"),
        (
            json.dumps({"job_id": JOB, "padding": "x" * (1 << 20)}).encode(),
            "is not a JSON object of at most 1 MiB",
        ),
        (None, "is missing"),
    ],
)
def test_a_review_is_neither_asked_nor_recorded_for_a_manifest_that_is_no_small_object(
    tmp_path: Path, stored: bytes | None, why: str
) -> None:
    record = archived(tmp_path)
    manifest = Path(record["manifest_uri"].removeprefix("file://"))
    if stored is None:
        manifest.unlink()
    else:
        manifest.write_bytes(stored)
    said = f"The manifest manifest.json of job {JOB}'s clip {why}: no verdict can be recorded in it"
    with pytest.raises(ScenarioValidationError) as before_asking:
        reviewable_manifests([record])
    assert str(before_asking.value) == said
    waits: list[float] = []
    with pytest.raises(ScenarioValidationError) as recording:
        record_review(
            record["manifest_uri"],
            JOB,
            {"decision": "approved", "by": "ana", "at": "now", "comment": None},
            sleep=waits.append,
        )
    assert str(recording.value) == said
    assert waits == []  # refused at once: waiting changes nothing
    assert (manifest.read_bytes() if stored is not None else None) == stored  # left as it was
    assert sorted(path.name for path in manifest.parent.iterdir()) == (
        ["asset_out1.mp4", "manifest.json"] if stored is not None else ["asset_out1.mp4"]
    )


VERDICT = {"decision": "rejected", "by": "ana", "at": "2026-12-08T10:00:00+00:00", "comment": "lips lag"}


class LinesLogged(logging.Handler):
    """The messages a logger wrote, in order."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def task_log(name: str) -> Iterator[tuple[logging.Logger, list[str]]]:
    """A logger as the review passes its task's, and the lines (warning and up) it writes while the block runs."""
    log, said = logging.getLogger(name), LinesLogged()
    log.propagate = False
    log.addHandler(said)
    try:
        yield log, said.lines
    finally:
        log.removeHandler(said)


@contextmanager
def unchangeable(path: Path) -> Iterator[None]:
    """``path`` refuses every change, root's too (the kernel's immutable flag), until the block ends."""
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_verdict_is_recorded_once_the_storage_writes_again(tmp_path: Path) -> None:
    record = archived(tmp_path)
    manifest = Path(record["manifest_uri"].removeprefix("file://"))
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:  # the storage comes back during the second wait
            subprocess.run(["chattr", "-i", str(manifest)], check=True)

    with task_log("tests.review.record") as (log, said), unchangeable(manifest):
        record_review(record["manifest_uri"], JOB, dict(VERDICT), log=log, sleep=sleep)
    assert waits == [2.0, 4.0]
    content = json.loads(manifest.read_text())
    assert content["review"] == VERDICT
    assert content["job_id"] == JOB  # the manifest, whole, with its verdict
    assert said == [
        f"Recording the verdict on job {JOB} failed (PermissionError: Operation not permitted); "
        f"trying again in {delay:g} s"
        for delay in (2, 4)
    ]
    assert sorted(path.name for path in manifest.parent.iterdir()) == ["asset_out1.mp4", "manifest.json"]


def test_a_verdict_is_recorded_once_s3_answers_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """S3 out of reach (its server stopped): s3fs raises botocore's error, not an ``OSError``; tried again too."""
    from moto.server import ThreadedMotoServer

    from tests.s3 import CREDENTIALS, keys, moto_s3

    with moto_s3("reviews") as client:
        for name, value in CREDENTIALS.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv(
            "AIRFLOW_CONN_S3_REVIEW",
            json.dumps(
                {"conn_type": "aws", "extra": {"endpoint_url": client.endpoint, "region_name": "us-east-1"}}
            ),
        )
        key = f"archive/{JOB}/manifest.json"
        client.put_object(Bucket="reviews", Key=key, Body=json.dumps({"job_id": JOB, "files": []}).encode())
        client.server.stop()
        waits: list[float] = []

        def sleep(seconds: float) -> None:  # S3 comes back during the first wait, on its address
            waits.append(seconds)
            host, port = client.endpoint.removeprefix("http://").split(":")
            client.server = ThreadedMotoServer(ip_address=host, port=int(port), verbose=False)
            client.server.start()

        with task_log("tests.review.record_s3") as (log, said):
            record_review(f"s3://reviews/{key}", JOB, dict(VERDICT), "s3_review", log=log, sleep=sleep)
        assert waits == [2.0]
        assert said == [  # its kind, not its message (botocore's names the object's URL)
            f"Recording the verdict on job {JOB} failed (EndpointConnectionError); trying again in 2 s"
        ]
        content = json.loads(client.get_object(Bucket="reviews", Key=key)["Body"].read())
        assert content == {"job_id": JOB, "files": [], "review": VERDICT}
        assert keys(client, "reviews", "") == [key]  # nothing half-written beside it


def test_a_storage_that_keeps_failing_fails_the_verdict_after_its_attempts(tmp_path: Path) -> None:
    record = archived(tmp_path)
    manifest = Path(record["manifest_uri"].removeprefix("file://"))
    before = manifest.read_bytes()
    waits: list[float] = []
    with unchangeable(manifest), pytest.raises(PermissionError):
        record_review(record["manifest_uri"], JOB, dict(VERDICT), sleep=waits.append)
    assert waits == [2.0, 4.0, 8.0]
    assert manifest.read_bytes() == before  # left as it was, no partial file beside it
    assert sorted(path.name for path in manifest.parent.iterdir()) == ["asset_out1.mp4", "manifest.json"]


def test_the_manifests_a_review_reads_come_once_each_with_their_sources(tmp_path: Path) -> None:
    record = archived(tmp_path)
    manifest = Path(record["manifest_uri"].removeprefix("file://"))
    content = json.loads(manifest.read_text())
    content["sources"] = [
        {"input": "videoUrl", "asset_id": "asset_face", "name": "face.mp4"},
        {"input": "audioUrl", "asset_id": "asset_voice", "name": "../voice.wav"},
    ]
    manifest.write_text(json.dumps(content))
    manifests = reviewable_manifests([record, dict(record)])  # two files of one job
    assert list(manifests) == [record["manifest_uri"]]
    assert source_names(manifests[record["manifest_uri"]]) == ["face.mp4"]  # a path is no file name


def test_a_review_whose_manifest_was_rewritten_fails_before_anyone_is_asked(
    scenario_emulator: EmulatorServer, airflow_home: Path, tmp_path: Path
) -> None:
    """In a real run: the clip's manifest rewritten between the archive and the review (someone else's write)
    fails the review on its first try, naming the job, and no required action is made: no one is asked."""
    import sqlite3

    from tests.airflow_runs import dags_test
    from tests.media_samples import submit_text_job

    job_id = submit_text_job(scenario_emulator, seconds=1)
    run = dags_test(
        "kling_review_of_a_rewritten_manifest", {"job_id": job_id, "destination": str(tmp_path / "archive")}
    )
    assert run.states == {
        "where": "success",
        "archive": "success",
        "rewrite_manifest": "success",
        "review": "failed",
    }, run.output[-4000:]
    assert run.tries["review"] == 1  # on that try: no retry asks
    assert (
        f"The manifest manifest.json of job {job_id}'s clip is not a JSON object of at most 1 MiB: no verdict "
        "can be recorded in it" in run.output
    )
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        (asked,) = db.execute(
            "SELECT count(*) FROM hitl_detail JOIN task_instance ON hitl_detail.ti_id = task_instance.id "
            "WHERE task_instance.dag_id = ? AND task_instance.run_id = ?",
            ("kling_review_of_a_rewritten_manifest", run.run_id),
        ).fetchone()
    assert asked == 0


def test_a_file_changed_since_it_was_archived_is_not_published(tmp_path: Path) -> None:
    record = archived(tmp_path)
    Path(record["uri"].removeprefix("file://")).write_bytes(b"something else")
    with pytest.raises(ScenarioValidationError, match="not the file that was archived"):
        publish_copies([record], str(tmp_path / "published"))
    assert [path.name for path in (tmp_path / "published").rglob("*") if path.is_file()] == []


def test_without_airflows_human_in_the_loop_operators_a_review_dag_fails_to_parse_saying_why(
    tmp_path: Path,
) -> None:
    """An Airflow without the standard provider's HITL module (simulated by blocking its import) must not
    run the DAG with its review silently left out: the DAG file fails to import, naming what to install."""
    import subprocess
    import sys

    dag_file = Path(__file__).parent.parent / "dags" / "kling_lipsync_pipeline.py"
    code = (
        "import sys, runpy; sys.modules['airflow.providers.standard.operators.hitl'] = None; "
        "runpy.run_path(sys.argv[1])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(dag_file)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert (
        "ImportError: The Kling review step needs Airflow's human-in-the-loop operators: install Airflow "
        in (result.stderr)
    )
    assert "apache-airflow-providers-standard" in result.stderr


def test_a_destination_that_is_no_storage_location_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioValidationError) as refused:
        checked_files([archived(tmp_path)], "http://cdn.example/x", "destination")
    assert "destination='http://cdn.example/x' is not a storage location" in str(refused.value)


def test_a_response_timeout_under_the_minimum_is_refused_naming_both() -> None:
    from datetime import timedelta

    from airflow_kling.operators.review import KlingReviewOperator

    with pytest.raises(ValueError, match=r"response_timeout=3 s is below the minimum of 15 s"):
        KlingReviewOperator(
            task_id="review", destination="/tmp/archive", response_timeout=timedelta(seconds=3)
        )
    accepted = KlingReviewOperator(
        task_id="review", destination="/tmp/a", response_timeout=timedelta(seconds=15)
    )
    assert accepted.response_timeout == timedelta(seconds=15)


def _reruns_of(dag_id: str) -> list[tuple[str, Any]]:
    """The runs a re-run triggered, with their conf, as the metadata database has them."""
    import json
    import os
    import sqlite3

    with sqlite3.connect(Path(os.environ["AIRFLOW_HOME"]) / "airflow.db") as db:
        rows = db.execute(
            "SELECT run_id, conf FROM dag_run WHERE dag_id = ? AND run_id LIKE 'kling_rerun__%' ORDER BY id",
            (dag_id,),
        ).fetchall()
    return [(run_id, json.loads(conf) if isinstance(conf, str) else conf) for run_id, conf in rows]


@pytest.mark.every_line
def test_a_rerun_triggers_one_run_for_a_rejection_and_nothing_for_anything_else() -> None:
    """In real DAG runs: a rejection by a person triggers one run with the given conf and what it re-runs; a
    second run over the same rejection triggers no second one; a timeout, a hostile job id, a count that is
    no number or one at ``max_reruns`` trigger nothing, and say why."""
    from tests.airflow_runs import dags_test, prepare_airflow_home

    prepare_airflow_home()
    dag_id = "kling_rerun_verdict"
    comment = (
        "lips drift" + "!" * 5000
    )  # an XCom is anyone's to write: the comment is cut at the form's limit
    rejected = {"decision": "rejected", "by": "ana", "comment": comment, "job_ids": ["job_rerun1"]}
    run = dags_test(dag_id, {"review": rejected})
    assert run.states["rerun"] == "success", run.output
    (rerun,) = _reruns_of(dag_id)
    assert rerun == (
        "kling_rerun__job_rerun1",
        {"text": "again", "kling_rerun": {"of": ["job_rerun1"], "comment": comment[:2000], "count": 1}},
    )
    link = run.xcom("rerun", "_link_KlingRerunLink")  # what the task's "Re-run" button opens
    assert link.endswith(f"/dags/{dag_id}/runs/kling_rerun__job_rerun1"), link

    again = dags_test(dag_id, {"review": rejected})  # the same rejection once more (a retry, a clear)
    assert again.states["rerun"] in ("success", "skipped"), again.output
    assert _reruns_of(dag_id) == [rerun]

    other = {"decision": "rejected", "job_ids": ["job_rerun4"]}
    for conf, state, why in (
        (
            {"review": {"decision": "timed_out", "job_ids": ["job_rerun2"]}},
            "skipped",
            "not rejected by a reviewer",
        ),
        ({"review": {"decision": "rejected", "job_ids": ["../../etc/passwd"]}}, "failed", "rejected job id"),
        ({"review": {"decision": "rejected", "job_ids": "job_rerun3"}}, "failed", "rejected job id"),
        (
            {"review": {"decision": "rejected", "job_ids": [f"job_many{n}" for n in range(101)]}},
            "failed",
            "name 101 jobs, more than the 100 one re-run takes",
        ),
        ({"review": "rejected"}, "skipped", "not rejected by a reviewer"),
        ({"review": other, "kling_rerun": {"count": "many"}}, "skipped", "without a count of re-runs"),
        ({"review": other, "kling_rerun": {"count": 1}}, "skipped", "(max_reruns=1): not again"),
    ):
        outcome = dags_test(dag_id, conf)
        assert outcome.states["rerun"] == state, (conf, outcome.output)
        assert why in outcome.output, (conf, outcome.output)
        assert not outcome.xcom("rerun", "_link_KlingRerunLink")
    assert _reruns_of(dag_id) == [rerun]


def test_max_reruns_must_be_a_whole_number_of_at_least_one() -> None:
    from airflow_kling.operators.rerun import KlingRerunRejectedOperator

    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match=r"max_reruns=.* must be a whole number >= 1"):
            KlingRerunRejectedOperator(task_id=f"rerun_{bad!s}", max_reruns=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("file:///archive/job_a/asset_b.mp4", r"file\:\/\/\/archive\/job\_a\/asset\_b\.mp4"),
        ("/data/`rm -rf`/x", r"\/data\/\`rm \-rf\`\/x"),
        ("`](https://elsewhere.example)", r"\`\]\(https\:\/\/elsewhere\.example\)"),
        ("/a\n\n# Heading", r"\/a \# Heading"),
        ("<img src=x onerror=alert(1)>", r"\<img src\=x onerror\=alert\(1\)\>"),
    ],
)
def test_a_value_in_the_reviewers_text_is_plain_text(text: str, shown: str) -> None:
    """Locations come from DAG params: in the reviewer's markdown each stays plain text, on one line."""
    from airflow_kling.operators.review import markdown_text

    assert markdown_text(text) == shown


@pytest.mark.parametrize(
    ("size", "shown"),
    [(0, "0 B"), (999, "999 B"), (880_312, "880.3 kB"), (2_363_367, "2.4 MB"), (1_200_000_000, "1.2 GB")],
)
def test_the_reviewer_reads_sizes_in_human_units(size: int, shown: str) -> None:
    from airflow_kling.operators.review import readable_size

    assert readable_size(size) == shown
