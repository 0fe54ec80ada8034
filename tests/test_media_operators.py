"""KlingPrepareMediaOperator and ScenarioUploadAssetOperator on local paths and file:// URIs, and the
emulator refusing what Kling refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_kling.emulator import EmulatorServer
from airflow_kling.exceptions import ScenarioAPIError
from airflow_kling.hooks.scenario import ScenarioHook
from airflow_kling.media.limits import check_audio, check_video
from airflow_kling.media.probing import probe
from airflow_kling.media.samples import make_audio, make_video
from airflow_kling.models.kling_lipsync import AUDIO_LIMITS as AUDIO
from airflow_kling.models.kling_lipsync import VIDEO_LIMITS as VIDEO
from airflow_kling.operators.assets import ScenarioUploadAssetOperator
from airflow_kling.operators.media import KlingPrepareMediaOperator
from airflow_kling.version_compat import AirflowFailException
from tests.media_samples import output_assets


def test_prepare_a_4k_take_and_a_long_wav(tmp_path: Path) -> None:
    video = make_video(tmp_path / "in" / "take.mov", width=2560, height=1440, seconds=11, fps=5)
    audio = make_audio(tmp_path / "in" / "speech.wav", seconds=30)
    result = KlingPrepareMediaOperator(
        task_id="prepare", video=video, audio=f"file://{audio}", output_dir=str(tmp_path / "out")
    ).execute({})  # type: ignore[arg-type]
    assert result["video"] == f"file://{tmp_path}/out/take.kling.mp4"
    assert result["audio"] == f"file://{tmp_path}/out/speech.kling.m4a"
    prepared_video = probe(tmp_path / "out" / "take.kling.mp4")
    prepared_audio = probe(tmp_path / "out" / "speech.kling.m4a")
    assert check_video(prepared_video, VIDEO) == []
    assert check_audio(prepared_audio, AUDIO) == []
    assert prepared_audio.duration <= prepared_video.duration
    assert "scaled 2560x1440 -> 1920x1080" in result["report"]["video"]["changes"]
    assert result["report"]["audio"]["changes"][0] == "trimmed 30.0 s -> 10.0 s"


def test_upload_refuses_a_file_over_the_limits_before_sending(
    scenario_emulator: EmulatorServer, tmp_path: Path
) -> None:
    clip = make_video(tmp_path / "long.mp4", width=640, height=360, seconds=12, fps=5)
    operator = ScenarioUploadAssetOperator(task_id="upload", source=clip)
    with pytest.raises(AirflowFailException) as raised:  # no retry can make the file fit
        operator.execute({})  # type: ignore[arg-type]
    message = str(raised.value)
    assert "duration must be 2-10 s, got 12.00 s" in message
    assert "width must be 720-1920 px, got 640 px" in message
    assert scenario_emulator.store.requests() == []
    asset_id = ScenarioUploadAssetOperator(task_id="upload", source=clip, validate=False).execute({})  # type: ignore[arg-type]
    assert ScenarioHook().get_asset(asset_id)["properties"]["duration"] == pytest.approx(12.0)


def test_upload_a_compliant_file_from_a_uri(scenario_emulator: EmulatorServer, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "ok.mp4", width=1280, height=720, seconds=3, fps=10)
    asset_id = ScenarioUploadAssetOperator(task_id="upload", source=f"file://{clip}").execute({})  # type: ignore[arg-type]
    asset = ScenarioHook().get_asset(asset_id)
    assert (asset["kind"], asset["metadata"]["fileName"], asset["properties"]["width"]) == (
        "video",
        "ok.mp4",
        1280,
    )


@pytest.mark.parametrize(
    ("clip", "message"),
    [
        (
            {"width": 1280, "height": 720, "seconds": 1.0},
            "videoUrl must last at least 2 s, asset_[A-Za-z0-9]+ lasts 1.00 s",
        ),
        ({"width": 640, "height": 480, "seconds": 3.0}, "videoUrl width must be 720-1920 px, got 640"),
    ],
)
def test_the_emulator_refuses_what_kling_refuses(
    scenario_emulator: EmulatorServer, tmp_path: Path, clip: dict[str, float], message: str
) -> None:
    hook = ScenarioHook()
    video = hook.upload_asset(make_video(tmp_path / "clip.mp4", fps=5, **clip))  # type: ignore[arg-type]
    with pytest.raises(ScenarioAPIError, match=message) as raised:
        hook.run_model("model_kling-lip-sync", {"videoUrl": video, "text": "hello"})
    assert raised.value.status == 400
    assert scenario_emulator.store.jobs == {}


def test_the_emulator_result_is_the_clip_speaking_the_audio(
    scenario_emulator: EmulatorServer, tmp_path: Path
) -> None:
    hook = ScenarioHook()
    video = hook.upload_asset(
        make_video(tmp_path / "face.mp4", width=1280, height=720, seconds=4, fps=10, audio=False)
    )
    audio = hook.upload_asset(make_audio(tmp_path / "voice.m4a", seconds=2))
    scenario_emulator.plan_jobs(seconds=0.1)
    job_id = hook.run_model("model_kling-lip-sync", {"videoUrl": video, "audioFile": audio})["job"]["jobId"]
    (output,) = output_assets(job_id)
    result = tmp_path / "result.mp4"
    result.write_bytes(hook.session.get(hook.get_asset(output)["url"]).content)
    info = probe(result)
    assert (info.has_video, info.has_audio, info.width, info.height) == (True, True, 1280, 720)
    assert info.duration == pytest.approx(4.0, abs=0.1)


def text_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG\n" * 400)
    return path


def picture(path: Path) -> Path:
    import av

    clip = make_video(path.with_suffix(".mp4"), width=720, height=720, seconds=2, fps=1)
    with av.open(str(clip)) as source, av.open(str(path), "w", format="image2") as out:
        frame = next(source.decode(video=0))
        stream = out.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, "rgb24"
        for packet in [*stream.encode(frame.reformat(format="rgb24")), *stream.encode(None)]:
            out.mux(packet)
    path.with_suffix(".mp4").unlink()
    return path


@pytest.mark.parametrize(("make", "demuxer"), [(text_file, "tty"), (picture, "png_pipe")])
def test_a_text_or_a_picture_is_no_video_anywhere_before_any_upload(
    scenario_emulator: EmulatorServer, tmp_path: Path, make: object, demuxer: str
) -> None:
    """FFmpeg's pseudo-demuxers would render a text file (``tty``) or a picture as video frames."""
    source = make(tmp_path / "in" / ("creds.txt" if demuxer == "tty" else "face.png"))  # type: ignore[operator]
    renamed = tmp_path / "in" / "face.mp4"  # a misleading name changes nothing
    renamed.write_bytes(source.read_bytes())
    refusals = {
        source: f"read by FFmpeg as '{demuxer}'.*not an audio or video container: refused",
        renamed: "not a readable media file|not an audio or video container",  # read as the name says
    }
    for path, refusal in refusals.items():
        with pytest.raises(AirflowFailException, match=refusal):
            KlingPrepareMediaOperator(
                task_id="prepare", video=str(path), output_dir=str(tmp_path / "out")
            ).execute({})  # type: ignore[arg-type]
        for validate in (True, False):
            with pytest.raises(AirflowFailException, match=refusal):
                ScenarioUploadAssetOperator(
                    task_id="upload", source=str(path), kind="video", validate=validate
                ).execute({})  # type: ignore[arg-type]
    assert scenario_emulator.store.requests("^/v1/uploads") == []
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_an_ffmpeg_protocol_in_a_file_name_is_only_a_file_name(tmp_path: Path) -> None:
    from airflow_kling.exceptions import MediaError

    video = make_video(tmp_path / "take.mp4", width=720, height=720, seconds=2, fps=5)
    for name in (f"concat:{video}|{video}", f"subfile,,start,0,end,0,,:{video}"):
        with pytest.raises(MediaError, match="cannot be read"):
            probe(name)
