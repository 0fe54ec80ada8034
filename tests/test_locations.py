"""Locations confined to roots: DAG params under ``[kling] input_roots``, and the preview's trust."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_kling.emulator import EmulatorServer
from airflow_kling.exceptions import ScenarioValidationError
from airflow_kling.files.locations import UntrustedValue, check_input_location, roots, under_roots
from airflow_kling.plugins.trust import PreviewTrust, playable_type


def test_without_the_setting_every_location_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__KLING__INPUT_ROOTS", raising=False)
    assert check_input_location("/etc/passwd", "video") == "/etc/passwd"


def test_with_the_setting_params_are_confined_to_its_roots(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    media = tmp_path / "media"
    (media / "takes").mkdir(parents=True)
    (media / "takes" / "link-out").symlink_to("/etc")
    monkeypatch.setenv("AIRFLOW__KLING__INPUT_ROOTS", f"{media}, s3://raw/takes")
    for allowed in (f"{media}/takes/a.mp4", f"file://{media}/b.mov", "s3://raw/takes/c.mp4", str(media)):
        assert check_input_location(allowed, "video") == allowed
    refused = [
        "/etc/passwd",
        f"{media}/../secret.mp4",
        f"{media}-other/a.mp4",  # a sibling whose name starts like the root
        f"{media}/takes/link-out/passwd",  # a symbolic link out of the root
        "s3://raw/takes/../other/c.mp4",
        "s3://raw/takesother/c.mp4",
        "s3://raw/takes/c.mp4?versionId=1",
        "http://169.254.169.254/latest/meta-data",
        "relative/take.mp4",
    ]
    for location in refused:
        with pytest.raises(ScenarioValidationError, match=r"video=.* is refused: .*\[kling\] input_roots"):
            check_input_location(location, "video")


def test_an_http_root_is_no_root() -> None:
    with pytest.raises(ValueError, match="https:// is not a storage location"):
        roots("https://example.com/videos", "archive_roots")


def test_the_preview_trusts_only_its_settings(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    trust = PreviewTrust(roots(str(archive), "archive_roots"), frozenset({"scenario_default"}), frozenset())
    assert trust.archived_path(f"file://{archive}/job_x/a.mp4", None) == archive / "job_x" / "a.mp4"
    assert trust.scenario_conn_id("scenario_default") == "scenario_default"
    with pytest.raises(UntrustedValue, match="'scenario_other' is not one the preview may use"):
        trust.scenario_conn_id("scenario_other")
    with pytest.raises(UntrustedValue, match="storage connection 'aws_x' is not one"):
        trust.archived_path(f"file://{archive}/a.mp4", "aws_x")
    with pytest.raises(UntrustedValue, match="archive_roots"):
        trust.archived_path("file:///etc/passwd", None)
    with pytest.raises(UntrustedValue, match=r"http:// location \.\.\. is under none"):  # not echoed
        under_roots("http://metadata.internal/token", trust.archive_roots)
    with pytest.raises(UntrustedValue, match="no user in it") as raised:
        under_roots("s3://user:pass@bucket/x", trust.archive_roots)
    assert "pass" not in str(raised.value).replace("no user", "")
    assert [
        playable_type(t)
        for t in ("video/mp4", "VIDEO/QUICKTIME; x=1", "image/png", "text/html", "image/svg+xml", None)
    ] == ["video/mp4", "video/quicktime", "image/png", None, None, None]


def test_every_operator_keeps_to_the_roots(
    scenario_emulator: EmulatorServer, airflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under ``[kling] input_roots``, each operator in a real run refuses a location out of the roots before
    any request, read or write, naming its argument: the upload's source, the preparation's video and output,
    the archive's destination, the review's destination and ``publish_to``."""
    import shutil

    from tests.airflow_runs import dags_test
    from tests.media_samples import sample_video

    inside, outside = tmp_path / "allowed", tmp_path / "outside"
    for folder in (inside, outside):
        folder.mkdir()
        shutil.copy(sample_video(), folder / "clip.mp4")
    monkeypatch.setenv("AIRFLOW__KLING__INPUT_ROOTS", str(inside))
    run = dags_test(
        "confined_locations",
        {
            "outside_clip": str(outside / "clip.mp4"),
            "inside_clip": str(inside / "clip.mp4"),
            "outside_dir": str(outside / "out"),
            "inside_dir": str(inside / "work"),
        },
    )
    assert run.states == {name: "failed" for name in run.states}, run.output[-4000:]
    assert set(run.tries.values()) == {1}  # failed at once: no retry changes a refusal
    refusals = {
        "upload": "source",
        "prepare_in": "video",
        "prepare_out": "output_dir",
        "archive": "destination",
        "review": "destination",
        "publish": "publish_to",
    }
    assert set(run.states) == set(refusals)
    for argument in set(refusals.values()):
        assert f"{argument}='{outside}/" in run.output, argument
    assert run.output.count("is under none of the allowed roots ([kling] input_roots)") >= len(refusals)
    assert scenario_emulator.store.requests() == []  # not one request
    assert sorted(path.name for path in outside.iterdir()) == ["clip.mp4"]  # nothing written
    assert sorted(path.name for path in inside.iterdir()) == ["clip.mp4"]
