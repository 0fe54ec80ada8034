"""Locations confined to roots: DAG params under ``[kling] input_roots``, and the preview's trust."""

from __future__ import annotations

from pathlib import Path

import pytest

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
