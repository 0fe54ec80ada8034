"""The preview's parts that need no Airflow server: which byte range a ``Range`` header asks for, which clips a
run's XComs describe, how often a job is asked of Scenario (the emulator) (the real server, browser and auth are
in ``test_ui_preview.py``)."""

from __future__ import annotations

import io

import pytest

from airflow_kling.emulator import EmulatorServer
from airflow_kling.plugins.clips import clips_from_xcoms
from airflow_kling.plugins.ranges import ByteRange, UnsatisfiableRange, parse_range, read_range
from tests.media_samples import output_assets, submit_text_job
from tests.test_archive import MODEL_IDS


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", ByteRange(0, 99, 1000)),
        ("bytes=900-", ByteRange(900, 999, 1000)),
        ("bytes=900-5000", ByteRange(900, 999, 1000)),  # an end past the file is cut to it
        ("bytes=-100", ByteRange(900, 999, 1000)),
        ("bytes=-5000", ByteRange(0, 999, 1000)),  # a suffix longer than the file is the whole file
        ("bytes=0-0", ByteRange(0, 0, 1000)),
        ("bytes=0-99,200-299", None),  # several ranges: the whole file, as RFC 9110 allows
        ("items=0-1", None),
        ("bytes=20-10", None),
        ("bytes=-", None),
    ],
)
def test_a_range_header_asks_for_these_bytes(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=1000-", 1000), ("bytes=-0", 1000), ("bytes=-10", 0)])
def test_a_range_outside_the_file_cannot_be_satisfied(header: str, size: int) -> None:
    with pytest.raises(UnsatisfiableRange):
        parse_range(header, size)


def test_a_byte_range_says_its_length_and_content_range() -> None:
    assert ByteRange(900, 999, 1000).length == 100
    assert ByteRange(900, 999, 1000).content_range == "bytes 900-999/1000"


def test_reading_a_range_reads_those_bytes_and_closes_the_file() -> None:
    data = bytes(range(256)) * 4096  # 1 MiB: several chunks
    source = io.BytesIO(data)
    assert b"".join(read_range(source, 1000, 600_000)) == data[1000:601_000]
    assert source.closed


def archive(files: list[tuple[str, str]], conn_id: str = "scenario_default") -> dict[str, object]:
    return {
        "conn_id": conn_id,
        "storage_conn_id": "s3_archive",
        "files": [
            {
                "asset_id": asset_id,
                "job_id": job_id,
                "uri": f"s3://archive/{job_id}/{asset_id}.mp4",
                "size": 10,
                "sha256": "0" * 64,
                "mime_type": "video/mp4",
                "manifest_uri": f"s3://archive/{job_id}/manifest.json",
            }
            for job_id, asset_id in files
        ],
    }


def test_a_mapped_batch_is_one_clip_per_map_index_each_with_its_archive() -> None:
    rows = [
        ("clip.lipsync", 1, "scenario_job_id", "job_b"),
        ("clip.lipsync", 1, "scenario_conn_id", "scenario_other"),
        ("clip.lipsync", 0, "scenario_job_id", "job_a"),
        ("clip.archive", 0, "scenario_archive", archive([("job_a", "asset_a")])),
        ("clip.archive", 1, "scenario_archive", archive([("job_b", "asset_b")])),
        ("clip.lipsync", 0, "return_value", {"job_id": "job_a"}),  # other keys are not read
    ]
    first, second = clips_from_xcoms(rows)
    assert (first.job_id, first.map_index, first.task_id, first.archive_task_id) == (
        "job_a",
        0,
        "clip.lipsync",
        "clip.archive",
    )
    assert (second.job_id, second.conn_id) == ("job_b", "scenario_other")
    assert [item["asset_id"] for item in first.files] == ["asset_a"]
    assert first.storage_conn_id == "s3_archive"
    assert first.made_by("clip.lipsync", 0)
    assert first.made_by("clip.archive", 0)
    assert first.made_by("clip.lipsync", -1)  # the mapped task's overview: every map index
    assert not first.made_by("clip.lipsync", 1)
    assert not first.made_by("report", -1)
    assert first.archived_file("asset_a") is not None
    assert first.archived_file("asset_b") is None


def test_a_review_task_shows_the_clips_it_asks_about_and_adds_none() -> None:
    rows = [
        ("clip.lipsync", 0, "scenario_job_id", "job_a"),
        ("clip.lipsync", 1, "scenario_job_id", "job_b"),
        ("clip.archive", 0, "scenario_archive", archive([("job_a", "asset_a")])),
        ("clip.review", 0, "kling_reviewing", ["job_a", "job_b", "job_elsewhere", 7]),
    ]
    first, second = clips_from_xcoms(rows)
    assert first.review_task_id == "clip.review"
    assert first.made_by("clip.review", 0)
    assert second.review_task_id is None  # another map index's clip: not this review's
    assert not second.made_by("clip.review", 0)
    assert [clip.job_id for clip in clips_from_xcoms(rows)] == ["job_a", "job_b"]  # no clip of its own


def test_an_archive_without_its_lipsync_in_the_run_is_a_clip_of_its_own() -> None:
    (clip,) = clips_from_xcoms(
        [("archive", -1, "scenario_archive", archive([("job_x", "asset_x")], "conn_x"))]
    )
    assert (clip.job_id, clip.conn_id, clip.task_id, clip.owner_task_id) == (
        "job_x",
        "conn_x",
        None,
        "archive",
    )


def test_xcoms_of_another_shape_are_ignored() -> None:
    rows = [
        ("lipsync", -1, "scenario_job_id", None),
        ("archive", -1, "scenario_archive", ["s3://not/a/record"]),
        ("archive", -1, "scenario_archive", {"files": [{"uri": "file:///etc/passwd"}]}),  # fields missing
    ]
    assert clips_from_xcoms(rows) == []


@pytest.mark.parametrize(("pushed", "kept"), MODEL_IDS)
def test_a_model_id_pushed_of_another_shape_is_ignored_as_the_archive_ignores_it(
    pushed: object, kept: str | None
) -> None:
    rows = [("lipsync", -1, "scenario_job_id", "job_a"), ("lipsync", -1, "scenario_model_id", pushed)]
    (clip,) = clips_from_xcoms(rows)
    assert clip.model_id == kept


def test_the_page_of_a_running_job_reloads_itself_and_has_no_player() -> None:
    from airflow_kling.plugins.clips import Clip
    from airflow_kling.plugins.page import REFRESH_SECONDS, ClipView, render_page

    job = {
        "jobId": "job_r",
        "status": "in-progress",
        "progress": 0.4,
        "createdAt": "2026-12-01T07:00:00.000Z",
    }
    view = ClipView(
        Clip("job_r", "scenario_default", -1, task_id="lipsync"), job, None, None, None, None, None
    )
    page = render_page("Lipsync preview: lipsync", [view], "none")
    assert f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' in page
    assert "in-progress (40%)" in page
    assert "still running" in page
    assert "<video" not in page
    done = ClipView(view.clip, {**job, "status": "success"}, None, None, "/v", None, "archive")
    assert "http-equiv" not in render_page("Lipsync preview: lipsync", [done], "none")


def test_text_from_the_job_is_escaped_in_the_page() -> None:
    from airflow_kling.plugins.clips import Clip
    from airflow_kling.plugins.page import ClipView, render_page

    job = {
        "status": "failure",
        "metadata": {"error": "<script>alert(1)</script>", "input": {"text": "<b>hi</b>"}},
    }
    page = render_page(
        "t", [ClipView(Clip("job_e", "c", -1, task_id="l"), job, None, None, None, None, None)], ""
    )
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;hi&lt;/b&gt;" in page


def test_the_plugin_module_imports_no_fastapi_until_the_api_server_reads_its_apps() -> None:
    """Airflow imports every plugin in every task process; the app is built only when it is asked for."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from airflow_kling.plugins.preview import KlingPreviewPlugin\n"
        "print('=', 'fastapi' in sys.modules)\n"
        "(app,) = KlingPreviewPlugin.fastapi_apps\n"
        "print('=', 'fastapi' in sys.modules, app['url_prefix'], sorted(r.path.split('/')[1] for r in app['app'].routes))\n"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    lines = [line for line in output.split("\n") if line.startswith("= ")]  # not Airflow's log lines (3.2)
    assert lines == ["= False", "= True /kling/preview ['poster', 'run', 'ti', 'video']"], output


def test_an_ended_job_is_asked_of_scenario_once_and_a_running_one_at_every_look(
    scenario_emulator: EmulatorServer,
) -> None:
    from airflow_kling.plugins.app import _read_job
    from airflow_kling.plugins.clips import Clip

    ended = submit_text_job(scenario_emulator, seconds=0.1)
    output_assets(ended)  # it has succeeded
    running = submit_text_job(scenario_emulator, outcome="stuck")
    reads = {
        job_id: len(scenario_emulator.store.requests(f"^/v1/jobs/{job_id}$")) for job_id in (ended, running)
    }
    for _ in range(3):  # a page reloaded, or a player's range requests
        for job_id in (ended, running):
            job, problem = _read_job(Clip(job_id=job_id, conn_id="scenario_default", map_index=-1))
            assert problem is None
            assert job is not None
            assert job["jobId"] == job_id
    assert len(scenario_emulator.store.requests(f"^/v1/jobs/{ended}$")) - reads[ended] == 1
    assert len(scenario_emulator.store.requests(f"^/v1/jobs/{running}$")) - reads[running] == 3


def test_no_more_ended_jobs_are_kept_than_the_bound(
    scenario_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_kling.plugins import app
    from airflow_kling.plugins.clips import Clip

    monkeypatch.setattr(app, "ENDED_JOBS_KEPT", 2)
    jobs = [submit_text_job(scenario_emulator, seconds=0.1) for _ in range(3)]
    for job_id in jobs:
        output_assets(job_id)
    reads = {job_id: len(scenario_emulator.store.requests(f"^/v1/jobs/{job_id}$")) for job_id in jobs}
    for job_id in [*jobs, jobs[0]]:  # the first was the oldest when the third came: asked again
        app._read_job(Clip(job_id=job_id, conn_id="scenario_default", map_index=-1))
    assert [len(scenario_emulator.store.requests(f"^/v1/jobs/{j}$")) - reads[j] for j in jobs] == [2, 1, 1]


def test_the_page_names_the_clip_and_says_things_as_people_know_them() -> None:
    """The heading is the clip's source file and a short job id; inputs by the file they came from; times as a
    duration and readable moments; the review's verdict a row of its own; long locations shortened, the whole
    a click away; nothing scrolls inside the page's frame."""
    from airflow_kling.plugins.clips import Clip
    from airflow_kling.plugins.page import ClipView, render_page

    job_id = "job_zIV4w2abcdefghijklmnop"
    record = archive([(job_id, "asset_out")])["files"][0]  # type: ignore[index]
    record["uri"] = f"file:///srv/kling/archive/team/{job_id}/asset_out.mp4"
    clip = Clip(job_id, "scenario_default", -1, task_id="lipsync", archive_task_id="archive", files=[record])
    clip.review_task_id = "review"
    job = {
        "jobId": job_id,
        "status": "success",
        "createdAt": "2026-12-06T10:31:02.000Z",
        "updatedAt": "2026-12-06T10:31:40.000Z",
        "metadata": {"input": {"videoUrl": "asset_wf0quPV0", "text": "Hello"}},
    }
    manifest = {
        "model_id": "model_kling-lip-sync",
        "inputs": {"videoUrl": "asset_wf0quPV0", "text": "Hello"},
        "sources": [
            {"input": "videoUrl", "asset_id": "asset_wf0quPV0", "name": "face.kling.mp4"},
            {"input": "audioFile", "asset_id": "asset_evil", "name": "../../etc/passwd"},
        ],
        "review": {
            "decision": "approved",
            "by": "Ada",
            "at": "2026-12-06T10:40:00+00:00",
            "comment": "Lips <ok>",
        },
    }
    view = ClipView(clip, job, None, manifest, "/v", None, "archive")
    page = render_page("Lipsync preview: review", [view], "none")
    assert "<h2>face.kling.mp4 · job_zIV4w2... <span" in page
    assert "<tr><th>Tasks</th><td>lipsync, archive, review</td></tr>" in page
    assert "face.kling.mp4 (asset_wf0quPV0)" in page
    facts = page.split('<details class="manifest">')[0]
    assert "passwd" not in facts  # a source name of another shape is not shown (the manifest is, escaped)
    assert "<tr><th>Processing</th><td>38 s, 6 Dec 2026 10:31:02 to 10:31:40 UTC</td></tr>" in page
    assert (
        "<tr><th>Review</th><td>approved by Ada, 6 Dec 2026 10:40:00 UTC: \u201cLips &lt;ok&gt;\u201d</td></tr>"
        in page
    )
    assert f"<summary><code>.../{job_id}/asset_out.mp4</code></summary>" in page
    assert f"<code>{record['uri']}</code></details>" in page
    assert "overflow: auto" not in page  # the manifest's text wraps: no scroll bar inside the frame
    assert "max-height: 320px" not in page
    assert "2026-12-06T10:31:02" not in facts  # no raw ISO times


def test_a_running_job_says_how_long_it_runs() -> None:
    from datetime import UTC, datetime, timedelta

    from airflow_kling.plugins.clips import Clip
    from airflow_kling.plugins.page import ClipView, render_page

    started = (datetime.now(UTC) - timedelta(seconds=125)).isoformat().replace("+00:00", "Z")
    job = {"jobId": "job_r", "status": "in-progress", "progress": 0.4, "createdAt": started}
    page = render_page(
        "t", [ClipView(Clip("job_r", "c", -1, task_id="l"), job, None, None, None, None, None)], ""
    )
    assert "running for 2 min " in page  # 125 s ago, however slow this machine renders
