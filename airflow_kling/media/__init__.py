"""Media for a model's file inputs: probe a clip, check it against the model's limits, and make it fit.

Importing this package is cheap: PyAV (and the FFmpeg in its wheels) loads only when a function decodes or
encodes.
"""

from __future__ import annotations

from airflow_kling.media.limits import AudioLimits, VideoLimits, Violation, check_audio, check_video
from airflow_kling.media.prepare import PrepareReport, prepare_audio, prepare_video
from airflow_kling.media.probing import MediaInfo, probe

__all__ = [
    "AudioLimits",
    "MediaInfo",
    "PrepareReport",
    "VideoLimits",
    "Violation",
    "check_audio",
    "check_video",
    "prepare_audio",
    "prepare_video",
    "probe",
]
