"""Preprocessing with PyAV on media made in the tests: every odd clip lands within Kling's limits, or
fails with an error that names the file and the problem; outputs are probed again to prove it."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_kling.exceptions import MediaError
from airflow_kling.media.limits import check_audio, check_video
from airflow_kling.media.prepare import fit_size, prepare_audio, prepare_video
from airflow_kling.media.probing import probe
from airflow_kling.media.samples import make_audio, make_video
from airflow_kling.models.kling_lipsync import AUDIO_LIMITS as AUDIO
from airflow_kling.models.kling_lipsync import VIDEO_LIMITS as VIDEO


def assert_fits_kling(path: str | Path) -> None:
    info = probe(path)
    assert check_video(info, VIDEO) == [], check_video(info, VIDEO)
    assert (info.video_codec, info.audio_codec if info.has_audio else "aac", info.rotation) == (
        "h264",
        "aac",
        0,
    )
    assert info.frame_rate <= 30


def no_leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if ".partial" in p.name]


def test_4k_12s_is_trimmed_and_scaled(tmp_path: Path) -> None:
    source = make_video(tmp_path / "master.mov", width=3840, height=2160, seconds=12, fps=5)
    report = prepare_video(source, tmp_path / "out.mp4", limits=VIDEO)
    assert_fits_kling(report.output)
    info = probe(report.output)
    assert (info.width, info.height) == (1920, 1080)
    assert info.duration == pytest.approx(10.0, abs=0.05)
    assert info.has_audio
    assert "trimmed 12.0 s -> 10.0 s (from 0 s)" in report.changes
    assert "scaled 3840x2160 -> 1920x1080" in report.changes
    assert not report.passed_through


def test_480p_60fps_is_scaled_up_and_capped_to_30fps(tmp_path: Path) -> None:
    source = make_video(tmp_path / "small.mp4", width=854, height=480, seconds=3, fps=60)
    report = prepare_video(source, tmp_path / "out.mp4", limits=VIDEO)
    assert_fits_kling(report.output)
    info = probe(report.output)
    assert (info.width, info.height, info.frame_rate) == (1280, 720, 30.0)
    assert "frame rate 60 -> 30 fps" in report.changes


def test_start_picks_the_window(tmp_path: Path) -> None:
    source = make_video(tmp_path / "take.mp4", width=1280, height=720, seconds=14, fps=10)
    report = prepare_video(source, tmp_path / "out.mp4", limits=VIDEO, start=6.0)
    assert probe(report.output).duration == pytest.approx(8.0, abs=0.05)
    assert "trimmed 14.0 s -> 8.0 s (from 6 s)" in report.changes


def test_portrait_phone_clip_is_rotated_into_the_pixels(tmp_path: Path) -> None:
    source = make_video(tmp_path / "phone.mp4", width=1920, height=1080, seconds=3, fps=10, rotation=90)
    assert probe(source).rotation == 270
    report = prepare_video(source, tmp_path / "out.mp4", limits=VIDEO)
    info = probe(report.output)
    assert (info.width, info.height, info.rotation) == (1080, 1920, 0)
    assert_fits_kling(report.output)


def test_21_9_fits_and_a_wider_ratio_is_refused(tmp_path: Path) -> None:
    source = make_video(tmp_path / "cinema.mp4", width=2560, height=1080, seconds=2.5, fps=10)
    report = prepare_video(source, tmp_path / "out.mp4", limits=VIDEO)
    info = probe(report.output)
    assert (info.width, info.height) == (1920, 810)
    assert_fits_kling(report.output)
    with pytest.raises(MediaError, match=r"aspect ratio 3000x1000 \(3.00:1\) cannot fit"):
        fit_size(3000, 1000, VIDEO)


def test_one_second_clip_fails_unless_padded(tmp_path: Path) -> None:
    source = make_video(tmp_path / "blink.mp4", width=1280, height=720, seconds=1, fps=10)
    with pytest.raises(MediaError, match=r"blink\.mp4: 1\.00 s of video .* at least 2 s \(pad_short=True"):
        prepare_video(source, tmp_path / "out.mp4", limits=VIDEO)
    assert not (tmp_path / "out.mp4").exists()
    report = prepare_video(source, tmp_path / "out.mp4", limits=VIDEO, pad_short=True)
    assert probe(report.output).duration == pytest.approx(2.0, abs=0.05)
    assert "padded 1.0 s -> 2 s by holding the last frame" in report.changes
    assert_fits_kling(report.output)


def test_a_compliant_clip_is_copied_not_re_encoded(tmp_path: Path) -> None:
    source = make_video(tmp_path / "ready.mp4", width=1280, height=720, seconds=3, fps=25)
    report = prepare_video(source, tmp_path / "out.mp4", limits=VIDEO)
    assert report.passed_through
    assert Path(report.output).read_bytes() == Path(source).read_bytes()


def test_a_compliant_clip_reports_its_output(tmp_path: Path) -> None:
    source = make_video(tmp_path / "ready.mp4", width=1280, height=720, seconds=3, fps=25)
    report = prepare_video(source, tmp_path / "out.mp4", limits=VIDEO)
    assert report.output_info["path"] == report.output  # the prepared file, not the source


@pytest.mark.parametrize(
    ("name", "audio_codec", "change"),
    [
        ("take.mov", "aac", "H.264 picture moved from .mov into .mp4 without re-encoding"),
        ("take.mp4", "libmp3lame", "sound encoded to AAC (it was mp3float)"),
    ],
)
def test_an_h264_clip_that_is_not_an_h264_aac_mp4_is_remuxed(
    tmp_path: Path, name: str, audio_codec: str, change: str
) -> None:
    source = make_video(tmp_path / name, width=1280, height=720, seconds=3, fps=10, audio_codec=audio_codec)
    report = prepare_video(source, tmp_path / "out.mp4", limits=VIDEO)
    assert change in report.changes
    assert report.passed_through  # the picture was not re-encoded
    out = probe(report.output)
    assert (out.video_codec, out.audio_codec) == ("h264", "aac")
    assert out.duration == pytest.approx(3.0, abs=0.1)
    assert Path(report.output).read_bytes()[8:12] != b"qt  "  # an .mp4, not a QuickTime file
    assert_fits_kling(report.output)


def test_audio_only_wav_of_40s_is_cut_and_shrunk(tmp_path: Path) -> None:
    source = make_audio(tmp_path / "interview.wav", seconds=40)
    assert probe(source).size_bytes > 3_000_000
    report = prepare_audio(source, tmp_path / "voice.m4a", limits=AUDIO, max_duration=8.0)
    info = probe(report.output)
    assert check_audio(info, AUDIO) == []
    assert (info.channels, info.audio_codec) == (1, "aac")
    assert info.duration == pytest.approx(8.0, abs=0.05)
    assert report.changes[0] == "trimmed 40.0 s -> 8.0 s"
    whole = prepare_audio(source, tmp_path / "whole.mp3", limits=AUDIO)
    assert probe(whole.output).size_bytes < 5_000_000
    assert probe(whole.output).duration == pytest.approx(40.0, abs=0.1)


def test_the_sound_of_a_video_becomes_the_audio(tmp_path: Path) -> None:
    source = make_video(tmp_path / "talk.mp4", width=1280, height=720, seconds=3, fps=10)
    report = prepare_audio(source, tmp_path / "talk.m4a", limits=AUDIO)
    assert "extracted the audio track of a video" in report.changes[-1]
    assert probe(report.output).has_video is False


def test_a_compliant_audio_file_is_copied(tmp_path: Path) -> None:
    source = make_audio(tmp_path / "ok.mp3", seconds=3)
    report = prepare_audio(source, tmp_path / "copy.mp3", limits=AUDIO)
    assert report.passed_through
    assert Path(report.output).read_bytes() == Path(source).read_bytes()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda d: (d / "notes.mp4").write_text("definitely not a video") and d / "notes.mp4",
            "not a readable media file",
        ),
        (lambda d: (d / "empty.mp4").write_bytes(b"") or d / "empty.mp4", "empty file"),
        (lambda d: Path(make_audio(d / "tone.wav", seconds=2)), "no video stream"),
    ],
)
def test_bad_inputs_name_the_file(tmp_path: Path, make: object, message: str) -> None:
    source = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(MediaError, match=message) as raised:
        prepare_video(source, tmp_path / "out.mp4", limits=VIDEO)
    assert str(source) in str(raised.value)
    assert not (tmp_path / "out.mp4").exists()
    assert no_leftovers(tmp_path) == []


def test_a_truncated_mp4_fails_cleanly_or_yields_a_compliant_clip(tmp_path: Path) -> None:
    whole = Path(make_video(tmp_path / "whole.mp4", width=1280, height=720, seconds=4, fps=10))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # the moov atom is lost at the end
    with pytest.raises(MediaError, match=r"cut\.mp4"):
        prepare_video(cut, tmp_path / "out.mp4", limits=VIDEO)
    assert not (tmp_path / "out.mp4").exists()
    assert no_leftovers(tmp_path) == []


def test_violations_name_the_limit_and_the_value(tmp_path: Path) -> None:
    info = probe(make_video(tmp_path / "big.mov", width=3840, height=2160, seconds=1, fps=5))
    assert [str(v) for v in check_video(info, VIDEO)] == [
        "duration must be 2-10 s, got 1.00 s",
        "width must be 720-1920 px, got 3840 px",
        "height must be 720-1920 px, got 2160 px",
    ]
