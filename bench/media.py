"""``prepare_video`` against the equivalent ``ffmpeg`` command line, in the same run on the same clips.

Each side runs as its own process (interpreter start-up and imports included for ours, process start-up
for ffmpeg's), measured for wall time, CPU time and peak RSS; medians of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import Measure, describe_machine, median_spread, print_table, run_measured

CLIPS = {
    "1080p 30 s (trim + re-encode)": {"width": 1920, "height": 1080, "seconds": 30, "fps": 30},
    "4K 12 s (trim + scale + re-encode)": {"width": 3840, "height": 2160, "seconds": 12, "fps": 30},
    "720p 5 s compliant (pass-through)": {"width": 1280, "height": 720, "seconds": 5, "fps": 25},
}


def ffmpeg_command(ffmpeg: str, source: Path, target: Path, width: int, height: int) -> list[str]:
    """What prepare_video does, as one ffmpeg command line (same window, scale, rate, codecs, bitrates)."""
    scale = f"scale={width}:{height}:flags=bicubic,fps=30,format=yuv420p"
    return [
        ffmpeg,
        "-loglevel",
        "error",
        "-y",
        "-i",
        str(source),
        "-t",
        "10",
        "-vf",
        scale,
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "23",
        "-maxrate",
        "8000000",
        "-bufsize",
        "16000000",
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        "-ar",
        "48000",
        "-ac",
        "2",
        "-movflags",
        "+faststart",
        str(target),
    ]


def make_clip(path: Path, clip: dict[str, int]) -> Path:
    """Synthesize the source clip in a child process, so that this one stays small."""
    code = "import sys, json; from airflow_kling.media.samples import make_video; make_video(sys.argv[1], **json.loads(sys.argv[2]))"
    subprocess.run([sys.executable, "-c", code, str(path), json.dumps(clip)], check=True)
    return path


def ours_command(source: Path, target: Path) -> list[str]:
    code = (
        "import sys; from airflow_kling.media.prepare import prepare_video; "
        "from airflow_kling.models.kling_lipsync import VIDEO_LIMITS; "
        "prepare_video(sys.argv[1], sys.argv[2], limits=VIDEO_LIMITS)"
    )
    return [sys.executable, "-c", code, str(source), str(target)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    import imageio_ffmpeg

    from airflow_kling.media.prepare import fit_size
    from airflow_kling.models.kling_lipsync import VIDEO_LIMITS

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    rows = []
    with tempfile.TemporaryDirectory(prefix="kling-bench-media-") as directory:
        work = Path(directory)
        for name, clip in CLIPS.items():
            source = make_clip(work / "source.mp4", clip)
            width, height = fit_size(int(clip["width"]), int(clip["height"]), VIDEO_LIMITS)
            ours: list[Measure] = []
            theirs: list[Measure] = []
            for _ in range(args.repeat):
                ours.append(run_measured(ours_command(source, work / "ours.mp4")))
                theirs.append(
                    run_measured(ffmpeg_command(ffmpeg, source, work / "ffmpeg.mp4", width, height))
                )
            ours_wall, ours_low, ours_high = median_spread([m.wall for m in ours])
            their_wall, their_low, their_high = median_spread([m.wall for m in theirs])
            ours_peak = median_spread([m.peak_mib for m in ours])[0]
            their_peak = median_spread([m.peak_mib for m in theirs])[0]
            rows.append(
                [
                    name,
                    f"{ours_wall:.2f} s ({ours_low:.2f}-{ours_high:.2f})",
                    f"{their_wall:.2f} s ({their_low:.2f}-{their_high:.2f})",
                    f"{ours_wall / their_wall:.2f}x",
                    f"{ours_peak:.0f} MiB",
                    f"{their_peak:.0f} MiB",
                    f"{(work / 'ours.mp4').stat().st_size / 1e6:.1f} MB",
                ]
            )
            (work / "source.mp4").unlink()
    print_table(
        f"Media preparation: prepare_video vs ffmpeg CLI (median of {args.repeat}, min-max) on {describe_machine()}",
        [
            "clip",
            "prepare_video",
            "ffmpeg",
            "time ratio (ours/ffmpeg)",
            "our peak RSS",
            "ffmpeg peak RSS",
            "our output",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
