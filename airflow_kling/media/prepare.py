"""Make a user's clip and voice track fit a model's media limits before any paid call.

PyAV does the work, imported when called. The limits come from the model's spec
(:class:`~airflow_kling.media.limits.VideoLimits`, :class:`~airflow_kling.media.limits.AudioLimits`).

Video: H.264 + AAC ``.mp4`` (faststart), trimmed to the limits' window, scaled keeping the aspect ratio so
that both displayed sides land within the limits (rotation metadata applied to the pixels), at most 30 fps,
with a capped bitrate. Audio: ``.m4a`` (AAC) or ``.mp3``, mono, under the size limit. A file that already fits is
copied as it is; an H.264 clip that fits but is not an H.264/AAC ``.mp4`` (a ``.mov``, other sound) is
remuxed, its picture never re-encoded. Outputs appear under their final name only once complete.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from airflow_kling.exceptions import MediaError
from airflow_kling.media.limits import AudioLimits, VideoLimits, check_audio, check_video
from airflow_kling.media.output import atomic_output, copy_atomically
from airflow_kling.media.probing import MediaInfo, open_media, probe

MAX_FPS = 30.0
VIDEO_MAX_BITRATE = 8_000_000
"""Bits per second at most for the prepared video: 10 s stay near 10 MB."""
AUDIO_BITRATE = 128_000
AUDIO_MIN_BITRATE = 32_000
X264_PRESET = "veryfast"
_TRANSPOSE = {90: ["transpose=clock"], 180: ["hflip", "vflip"], 270: ["transpose=cclock"]}


@dataclass
class PrepareReport:
    """What a preparation did, in words a person reads in a task log, and what came out."""

    source: str
    output: str
    passed_through: bool
    changes: list[str] = field(default_factory=list)
    output_info: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The plan as a dict, for an XCom."""
        return asdict(self)


def prepare_video(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    limits: VideoLimits,
    max_duration: float | None = None,
    start: float = 0.0,
    pad_short: bool = False,
) -> PrepareReport:
    """Write a version of ``src`` at ``dst`` (``.mp4``) that meets every limit of ``limits``.

    :param limits: the model's video limits, e.g. ``KLING_LIPSYNC.video_limits``.
    :param max_duration: seconds to keep at most, within the limits' lengths; default their maximum.
    :param start: where the kept window starts, in seconds; default 0.
    :param pad_short: hold the last frame to reach the minimum length when less is left; default ``False``
        (an error).
    :raises MediaError: unreadable input, no video stream, too short, or an aspect ratio no scaling fits.
    """
    source, target = os.fspath(src), Path(dst)
    max_duration = limits.max_seconds if max_duration is None else max_duration
    if not limits.min_seconds <= max_duration <= limits.max_seconds:
        raise MediaError(
            f"max_duration must be {limits.min_seconds:g}-{limits.max_seconds:g} s, got {max_duration}"
        )
    if start < 0:
        raise MediaError(f"start must be 0 s or later, got {start}")
    if target.suffix.lower() != ".mp4":
        raise MediaError(f"{target}: the prepared video is written as .mp4")
    info = probe(source)
    if not info.has_video:
        raise MediaError(f"{source}: no video stream")
    available = info.duration - start
    if available <= 0:
        raise MediaError(f"{source}: start {start} s is past the end of the video ({info.duration:.2f} s)")
    window = min(max_duration, available)
    if window < limits.min_seconds and not pad_short:
        raise MediaError(
            f"{source}: {window:.2f} s of video from {start:g} s, the model needs at least {limits.min_seconds:g} s "
            "(pad_short=True holds the last frame to reach it)"
        )
    width, height = fit_size(info.display_width, info.display_height, limits, source)
    if (
        start == 0
        and info.duration <= max_duration
        and info.rotation == 0
        and info.video_codec == "h264"
        and not check_video(info, limits)
    ):  # the picture fits as it is: never re-encoded
        if Path(source).suffix.lower() == ".mp4" and info.audio_codec in (None, "aac"):
            copy_atomically(source, target)
            changes = ["already an H.264/AAC .mp4 within every limit: copied, not re-encoded"]
        else:
            with atomic_output(target) as temporary:
                changes = _remux(source, temporary, info)
        return PrepareReport(source, str(target), True, changes, probe(target).as_dict())
    changes = _video_changes(info, start, window, width, height, pad_short, limits.min_seconds)
    with atomic_output(target) as temporary:
        _transcode(
            source,
            temporary,
            info,
            start,
            window,
            max(window, limits.min_seconds) if pad_short else window,
            width,
            height,
        )
    output = probe(target)
    return PrepareReport(source, str(target), False, changes, output.as_dict())


def prepare_audio(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    limits: AudioLimits,
    max_duration: float | None = None,
) -> PrepareReport:
    """Write ``src``'s audio (an audio file, or a video's sound track) at ``dst`` within ``limits``.

    :param dst: ``.m4a`` (AAC) or ``.mp3``.
    :param limits: the model's audio limits, e.g. ``KLING_LIPSYNC.audio_limits``.
    :param max_duration: seconds to keep at most, e.g. the prepared video's length; default all.
    :raises MediaError: unreadable input, no audio stream, or too long to fit the size limit even at 32 kb/s.
    """
    source, target = os.fspath(src), Path(dst)
    codec = {".m4a": "aac", ".mp3": "libmp3lame"}.get(target.suffix.lower())
    if codec is None:
        raise MediaError(f"{target}: the prepared audio is written as .m4a or .mp3")
    info = probe(source)
    if not info.has_audio:
        raise MediaError(f"{source}: no audio stream")
    keep = info.duration if max_duration is None else min(max_duration, info.duration)
    fits = not check_audio(info, limits) and not info.has_video and keep >= info.duration - 0.05
    if fits and Path(source).suffix.lower() == target.suffix.lower():
        copy_atomically(source, target)
        return PrepareReport(
            source,
            str(target),
            True,
            ["already within every limit: copied, not re-encoded"],
            probe(target).as_dict(),
        )
    bitrate = min(AUDIO_BITRATE, int(0.9 * limits.max_bytes * 8 / max(keep, 0.1)) // 1000 * 1000)
    if bitrate < AUDIO_MIN_BITRATE:
        raise MediaError(
            f"{source}: {keep:.1f} s of audio cannot fit {limits.max_bytes / 1_000_000:g} MB even at "
            f"{AUDIO_MIN_BITRATE // 1000} kb/s; pass max_duration"
        )
    changes = []
    if keep < info.duration - 0.05:
        changes.append(f"trimmed {info.duration:.1f} s -> {keep:.1f} s")
    what = "extracted the audio track of a video" if info.has_video else f"re-encoded {info.audio_codec}"
    changes.append(f"{what} as mono {'AAC' if codec == 'aac' else 'MP3'} at {bitrate // 1000} kb/s")
    with atomic_output(target) as temporary:
        _encode_audio_file(source, temporary, codec, bitrate, keep)
    return PrepareReport(source, str(target), False, changes, probe(target).as_dict())


def fit_size(width: int, height: int, limits: VideoLimits, source: str = "video") -> tuple[int, int]:
    """The displayed size, scaled keeping the aspect ratio so both sides are within ``limits`` (even numbers).

    :raises MediaError: the aspect ratio is wider than ``max_side:min_side``, so no scale fits both sides.
    """
    low, high = limits.min_side, limits.max_side
    short, long = min(width, height), max(width, height)
    if short <= 0:
        raise MediaError(f"{source}: the video has no picture size")
    if long / short > high / low:
        raise MediaError(
            f"{source}: aspect ratio {width}x{height} ({long / short:.2f}:1) cannot fit {low}-"
            f"{high} px on both sides (at most {high / low:.2f}:1)"
        )
    scale = 1.0
    if short < low:
        scale = low / short
    elif long > high:
        scale = high / long
    if scale == 1.0:
        return width, height

    def even(value: float) -> int:
        return min(max(round(value / 2) * 2, low), high)

    return even(width * scale), even(height * scale)


def _video_changes(
    info: MediaInfo, start: float, window: float, width: int, height: int, pad_short: bool, min_seconds: float
) -> list[str]:
    changes = []
    if start > 0 or window < info.duration - 0.01:
        changes.append(f"trimmed {info.duration:.1f} s -> {window:.1f} s (from {start:g} s)")
    if pad_short and window < min_seconds:
        changes.append(f"padded {window:.1f} s -> {min_seconds:g} s by holding the last frame")
    if info.rotation:
        changes.append(
            f"rotated {info.rotation} degrees into the pixels (displayed {info.display_width}x{info.display_height})"
        )
    if (width, height) != (info.display_width, info.display_height):
        changes.append(f"scaled {info.display_width}x{info.display_height} -> {width}x{height}")
    if info.frame_rate > MAX_FPS:
        changes.append(f"frame rate {info.frame_rate:g} -> {MAX_FPS:g} fps")
    changes.append(
        f"re-encoded H.264 ({X264_PRESET}, at most {VIDEO_MAX_BITRATE // 1_000_000} Mb/s) + AAC in .mp4"
    )
    return changes


def _remux(source: str, target: Path, info: MediaInfo) -> list[str]:
    """Put an H.264 picture into ``.mp4`` packet by packet; the sound too when it is AAC, else encoded to AAC."""
    import av

    with (
        open_media(source) as src,
        av.open(str(target), "w", format="mp4", options={"movflags": "+faststart"}) as out,
    ):
        in_video = src.streams.video[0]
        picture = out.add_stream_from_template(in_video)
        in_audio = src.streams.audio[0] if info.has_audio else None
        copy_sound = in_audio is not None and info.audio_codec == "aac"
        if copy_sound:
            sound = out.add_stream_from_template(in_audio)
        elif in_audio is not None:
            sound = out.add_stream("aac", rate=48000)
            sound.codec_context.bit_rate = AUDIO_BITRATE
        for packet in src.demux(*([in_video, in_audio] if copy_sound else [in_video])):
            if packet.dts is None:
                continue
            packet.stream = picture if packet.stream.index == in_video.index else sound
            out.mux(packet)
        if in_audio is not None and not copy_sound:
            copy_audio(src, out, sound, 0.0, info.duration, layout="stereo")
    suffix = Path(source).suffix.lower()
    changes = [
        f"H.264 picture moved from {suffix or 'its container'} into .mp4 without re-encoding"
        if suffix != ".mp4"
        else "H.264 picture kept as it is, not re-encoded"
    ]
    if in_audio is not None and not copy_sound:
        changes.append(f"sound encoded to AAC (it was {info.audio_codec})")
    return changes


def _transcode(
    source: str,
    target: Path,
    info: MediaInfo,
    start: float,
    window: float,
    length: float,
    width: int,
    height: int,
) -> None:
    import av
    import av.filter

    fps = min(info.frame_rate or MAX_FPS, MAX_FPS)
    rate = Fraction(fps).limit_denominator(1001)
    slots = max(1, round(length * fps))
    slot_limit = round(window * fps)  # slots past this hold the last frame (padding)
    with (
        open_media(source) as src,
        av.open(str(target), "w", format="mp4", options={"movflags": "+faststart"}) as out,
    ):
        in_video = src.streams.video[0]
        in_video.thread_type = "AUTO"
        video = out.add_stream(
            "libx264",
            rate=rate,
            options={
                "preset": X264_PRESET,
                "crf": "23",
                "maxrate": str(VIDEO_MAX_BITRATE),
                "bufsize": str(2 * VIDEO_MAX_BITRATE),
            },
        )
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.thread_count = 0
        video.codec_context.thread_type = "FRAME"  # x264 frame threads: much faster than slices
        audio = out.add_stream("aac", rate=48000) if info.has_audio else None  # every stream before muxing
        graph = av.filter.Graph()
        chain = [graph.add_buffer(template=in_video)]
        for spec in [
            *_TRANSPOSE.get(info.rotation, []),
            f"scale={width}:{height}:flags=bicubic",
            "format=yuv420p",
        ]:
            name, _, arguments = spec.partition("=")
            chain.append(graph.add(name, arguments or None))
        chain.append(graph.add("buffersink"))
        for upstream, downstream in itertools.pairwise(chain):
            upstream.link_to(downstream)
        graph.configure()

        def emit(frame: Any, slot: int) -> None:
            graph.push(frame)
            converted = graph.pull()
            converted.pts, converted.time_base = slot, 1 / rate
            converted.pict_type = av.video.frame.PictureType.NONE
            out.mux(video.encode(converted))

        if start > 0:
            src.seek(int(start / in_video.time_base), stream=in_video, backward=True)
        slot, last = 0, None
        for frame in src.decode(in_video):
            if frame.time is None:
                continue
            while slot < slot_limit and start + slot / fps < frame.time - 1e-6 and last is not None:
                emit(last, slot)
                slot += 1
            if slot >= slot_limit:
                break
            last = frame
        if last is None:
            raise MediaError(f"{source}: no video frame from {start:g} s on (truncated file?)")
        while slot < slots:
            emit(last, slot)
            slot += 1
        out.mux(video.encode())
        if audio is not None:
            audio.codec_context.bit_rate = AUDIO_BITRATE
            copy_audio(src, out, audio, start, min(window, length), layout="stereo")


def _encode_audio_file(source: str, target: Path, codec: str, bitrate: int, keep: float) -> None:
    import av

    container_format = "mp4" if codec == "aac" else "mp3"
    with (
        open_media(source) as src,
        av.open(
            str(target),
            "w",
            format=container_format,
            options={"movflags": "+faststart"} if codec == "aac" else {},
        ) as out,
    ):
        stream = out.add_stream(codec, rate=44100)
        stream.codec_context.bit_rate = bitrate
        stream.codec_context.layout = "mono"
        copy_audio(src, out, stream, 0.0, keep, layout="mono")


def copy_audio(src: Any, out: Any, stream: Any, start: float, seconds: float, layout: str) -> None:
    """Re-encode ``seconds`` of ``src``'s first audio stream from ``start`` into ``stream``.

    ``src`` is an open input container; ``stream`` belongs to the output container ``out``.
    """
    import av

    in_audio = src.streams.audio[0]
    src.seek(int(start / in_audio.time_base) if start > 0 else 0, stream=in_audio, backward=True)
    rate = stream.codec_context.sample_rate
    resampler = av.AudioResampler(
        format=stream.codec_context.codec.audio_formats[0].name,
        layout=layout,
        rate=rate,
        frame_size=stream.codec_context.frame_size or None,
    )
    wanted = math.floor(seconds * rate)
    skip = 0
    written = 0
    try:
        for frame in src.decode(in_audio):
            if frame.time is not None and frame.time + frame.samples / frame.sample_rate <= start:
                continue
            if frame.time is not None and frame.time < start:
                skip = int((start - frame.time) * rate)
            for piece in resampler.resample(frame):
                written = _write_samples(out, stream, piece, written, wanted, skip)
                skip = 0
            if written >= wanted:
                break
        for piece in resampler.resample(None):
            written = _write_samples(out, stream, piece, written, wanted, 0)
    except av.FFmpegError as error:
        raise MediaError(f"{src.name}: the audio cannot be decoded ({error})") from None
    out.mux(stream.encode())


def _write_samples(out: Any, stream: Any, frame: Any, written: int, wanted: int, skip: int) -> int:
    # Whole frames only, and never past the window: the sound track must not outlast the picture.
    if written + frame.samples > wanted or skip >= frame.samples:
        return written
    frame.pts, frame.time_base = written, Fraction(1, stream.codec_context.sample_rate)
    out.mux(stream.encode(frame))
    return written + int(frame.samples)
