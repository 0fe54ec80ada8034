"""Read what a media file is: duration, size, picture, rotation, codecs (PyAV, imported when called)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from airflow_kling.exceptions import MediaError


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` found in a file.

    :param duration: seconds (the longest stream, or the container's duration).
    :param width: coded width in pixels (0 without video).
    :param height: coded height in pixels (0 without video).
    :param rotation: clockwise degrees to turn the picture for display: 0, 90, 180 or 270.
    :param bitrate: bits per second over the whole file.
    :param size_bytes: the file's size.
    """

    path: str
    duration: float
    size_bytes: int
    bitrate: int
    container: str
    has_video: bool
    has_audio: bool
    width: int = 0
    height: int = 0
    rotation: int = 0
    frame_rate: float = 0.0
    video_codec: str | None = None
    audio_codec: str | None = None
    sample_rate: int = 0
    channels: int = 0

    @property
    def display_width(self) -> int:
        """Width in pixels as displayed, its rotation applied."""
        return self.height if self.rotation in (90, 270) else self.width

    @property
    def display_height(self) -> int:
        """Height in pixels as displayed, its rotation applied."""
        return self.width if self.rotation in (90, 270) else self.height

    def as_dict(self) -> dict[str, Any]:
        """The facts as a dict, for an XCom."""
        return asdict(self)


MEDIA_CONTAINERS = frozenset(
    {
        # video (and their audio-only cousins)
        "mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "avi", "flv", "asf", "mpegts", "mpeg",
        # audio
        "mp3", "wav", "w64", "aac", "ogg", "flac", "aiff",
    }
)  # fmt: skip
"""FFmpeg demuxers of real audio and video containers, the only ones read. FFmpeg also has pseudo-demuxers
that turn other files into media (``tty`` renders a text file as video frames, ``image2`` a picture,
``lavfi`` a filter graph, ``concat`` a list of other files): a file they detect is refused by name."""


def open_media(path: str | os.PathLike[str]) -> Any:
    """An FFmpeg input of a local file, read through the ``file:`` protocol only, in a real container.

    A path such as ``concat:...`` or ``http://...`` is a file name, never an FFmpeg protocol.

    :raises MediaError: the file's container is not one of :data:`MEDIA_CONTAINERS`.
    """
    import av

    path = os.fspath(path)
    container = av.open(f"file:{os.path.abspath(path)}")
    names = set(container.format.name.split(","))
    if not names & MEDIA_CONTAINERS:
        container.close()
        raise MediaError(
            f"{path}: read by FFmpeg as {container.format.name!r} ({container.format.long_name}), not an "
            f"audio or video container: refused (read: {', '.join(sorted(MEDIA_CONTAINERS))})"
        )
    return container


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Probe a local media file.

    :raises MediaError: the file is empty, not media (a text, a picture: see :data:`MEDIA_CONTAINERS`), or
        unreadable; the message names the file.
    """
    import av

    path = os.fspath(path)
    size = _size(path)
    try:
        with open_media(path) as container:
            video = container.streams.video[0] if container.streams.video else None
            audio = container.streams.audio[0] if container.streams.audio else None
            if video is None and audio is None:
                raise MediaError(f"{path}: no audio or video stream")
            durations = [
                float(stream.duration * stream.time_base)
                for stream in (video, audio)
                if stream is not None and stream.duration and stream.time_base
            ]
            if container.duration:
                durations.append(container.duration / av.time_base)
            duration = max(durations) if durations else 0.0
            info: dict[str, Any] = {
                "path": path,
                "duration": round(duration, 3),
                "size_bytes": size,
                "bitrate": int(size * 8 / duration) if duration > 0 else 0,
                "container": container.format.name,
                "has_video": video is not None,
                "has_audio": audio is not None,
            }
            if audio is not None:
                info.update(
                    audio_codec=audio.codec_context.name,
                    sample_rate=int(audio.codec_context.sample_rate or 0),
                    channels=int(audio.codec_context.channels or 0),
                )
            if video is not None:
                rate = video.average_rate or video.guessed_rate
                info.update(
                    width=int(video.codec_context.width),
                    height=int(video.codec_context.height),
                    frame_rate=round(float(rate), 3) if rate else 0.0,
                    video_codec=video.codec_context.name,
                    rotation=_rotation(container, video),
                )
    except MediaError:
        raise
    except (av.FFmpegError, ValueError, IndexError, StopIteration) as error:
        raise MediaError(f"{path}: not a readable media file ({error})") from None
    return MediaInfo(**info)


def _size(path: str) -> int:
    try:
        size = os.path.getsize(path)
    except OSError as error:
        raise MediaError(f"{path}: cannot be read ({error.strerror})") from None
    if size == 0:
        raise MediaError(f"{path}: empty file (0 bytes)")
    return size


def _rotation(container: Any, video: Any) -> int:
    """Clockwise display rotation, read from the first frame's display matrix (as ffmpeg autorotates)."""
    for frame in container.decode(video):
        counterclockwise = float(getattr(frame, "rotation", 0) or 0)
        return round(-counterclockwise) % 360
    raise MediaError(f"{container.name}: the video stream has no decodable frame")
