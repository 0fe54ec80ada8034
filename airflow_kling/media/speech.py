"""A placeholder lipsync result.

The input picture (not re-encoded) under a new sound track (the emulator's output for a lipsync model).
"""

from __future__ import annotations

import os

from airflow_kling.media.output import atomic_output

WORDS_PER_SECOND = 2.5
"""Speaking rate at ``voiceSpeed`` 1.0, to size a placeholder voice for a text."""


def speaking_seconds(text: str, voice_speed: float = 1.0) -> float:
    """How long a voice takes to say ``text`` at ``voice_speed``: at least half a second."""
    return max(0.5, len(text.split()) / WORDS_PER_SECOND / max(voice_speed, 0.1))


def mux_speech(
    video: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    audio: str | os.PathLike[str] | None = None,
    tone_seconds: float | None = None,
) -> str:
    """Write ``dst`` (``.mp4``).

    The picture of ``video`` (stream copy) with ``audio``'s sound, or with a 220 Hz tone of ``tone_seconds``,
    both cut at the video's length. Returns ``dst``.
    """
    import av

    from airflow_kling.media.prepare import AUDIO_BITRATE, copy_audio
    from airflow_kling.media.samples import write_tone

    with (
        atomic_output(dst) as temporary,
        av.open(os.fspath(video)) as src,
        av.open(str(temporary), "w", format="mp4", options={"movflags": "+faststart"}) as out,
    ):
        in_video = src.streams.video[0]
        picture = out.add_stream_from_template(in_video)
        sound = out.add_stream("aac", rate=48000)
        sound.codec_context.bit_rate = AUDIO_BITRATE
        length = float(in_video.duration * in_video.time_base) if in_video.duration else 10.0
        for packet in src.demux(in_video):
            if packet.dts is None:
                continue
            packet.stream = picture
            out.mux(packet)
        if audio is not None:
            with av.open(os.fspath(audio)) as voice:
                copy_audio(voice, out, sound, 0.0, length, layout="stereo")
        else:
            write_tone(out, sound, min(tone_seconds or length, length), frequency=220)
    return os.fspath(dst)
