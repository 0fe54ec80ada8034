"""Small sample media, synthesized with FFmpeg's test sources.

For the example DAGs, the tests and the benchmarks, so that nothing has to be downloaded or shipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

from airflow_kling.media.output import atomic_output


def make_video(
    path: str | os.PathLike[str],
    *,
    width: int = 1280,
    height: int = 720,
    seconds: float = 4.0,
    fps: int = 25,
    rotation: int = 0,
    audio: bool = True,
    codec: str = "libx264",
    audio_codec: str = "aac",
) -> str:
    """Write a test-pattern video (with a 440 Hz tone unless ``audio=False``) and return its path.

    :param rotation: display rotation metadata in degrees counterclockwise (as phones write it), e.g. 90.
    """
    import av
    import av.filter

    with atomic_output(path) as temporary, av.open(str(temporary), "w", format=_format_of(path)) as out:
        video = out.add_stream(
            codec, rate=fps, options={"preset": "ultrafast", "crf": "32"} if codec == "libx264" else {}
        )
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if rotation:
            video.set_display_rotation(rotation)
        tone = out.add_stream(audio_codec, rate=48000) if audio else None
        graph = av.filter.Graph()
        source = graph.add("testsrc2", f"size={width}x{height}:rate={fps}:duration={seconds}")
        convert = graph.add("format", "yuv420p")
        sink = graph.add("buffersink")
        source.link_to(convert)
        convert.link_to(sink)
        graph.configure()
        for index, frame in enumerate(_pull_all(graph)):
            frame.pts, frame.time_base = index, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if tone is not None:
            write_tone(out, tone, seconds)
    return os.fspath(path)


def make_audio(path: str | os.PathLike[str], *, seconds: float = 4.0, frequency: int = 440) -> str:
    """Write a sine tone as ``.wav``, ``.mp3`` or ``.m4a`` (by the extension) and return its path."""
    import av

    codec = {".wav": "pcm_s16le", ".mp3": "libmp3lame", ".m4a": "aac", ".aac": "aac"}[_suffix(path)]
    with atomic_output(path) as temporary, av.open(str(temporary), "w", format=_format_of(path)) as out:
        stream = out.add_stream(codec, rate=44100)
        write_tone(out, stream, seconds, frequency)
    return os.fspath(path)


def write_tone(out: Any, stream: Any, seconds: float, frequency: int = 440) -> None:
    """Encode a sine tone of ``seconds`` into an audio ``stream`` of the output container ``out``."""
    import av.filter

    rate = stream.codec_context.sample_rate
    graph = av.filter.Graph()
    source = graph.add("sine", f"frequency={frequency}:sample_rate={rate}:duration={seconds}")
    layout = "mono" if stream.codec_context.name == "pcm_s16le" else "stereo"
    sample_format = stream.codec_context.codec.audio_formats[0].name
    convert = graph.add("aformat", f"sample_fmts={sample_format}:channel_layouts={layout}")
    sink = graph.add("abuffersink")
    source.link_to(convert)
    convert.link_to(sink)
    graph.configure()
    written = 0
    for frame in _pull_all(graph):
        frame.pts, frame.time_base = written, Fraction(1, rate)
        written += frame.samples
        out.mux(stream.encode(frame))
    out.mux(stream.encode())


def _pull_all(graph: Any) -> Iterator[Any]:
    """Every frame a source-only filter graph makes, one at a time (a 4K clip does not fit in memory)."""
    import av

    while True:
        try:
            yield graph.pull()
        except (av.error.EOFError, av.error.BlockingIOError):
            return


def _suffix(path: str | os.PathLike[str]) -> str:
    return os.path.splitext(os.fspath(path))[1].lower()


def _format_of(path: str | os.PathLike[str]) -> str:
    return {
        ".mp4": "mp4",
        ".m4a": "mp4",
        ".mov": "mov",
        ".wav": "wav",
        ".mp3": "mp3",
        ".aac": "adts",
        ".mkv": "matroska",
    }.get(_suffix(path), "mp4")
