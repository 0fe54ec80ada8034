"""The README's demo: the provider end to end against a local Scenario emulator, offline.

Starts the emulator, uploads a clip and a voice track, runs a Kling lipsync job, waits for it and
downloads the result, then stops the emulator.
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

from airflow_kling.emulator import run_emulator

OUTPUT_DIR = Path(".demo")


def main() -> int:
    OUTPUT_DIR.mkdir(exist_ok=True)
    os.environ.setdefault("AIRFLOW_HOME", str((OUTPUT_DIR / "airflow").resolve()))
    with run_emulator(job_seconds=3) as emulator:
        os.environ["AIRFLOW_CONN_SCENARIO_DEFAULT"] = emulator.connection_uri()
        from airflow_kling.hooks.scenario import ScenarioHook
        from airflow_kling.jobs import is_terminal, job_asset_ids, job_error_text

        print(f"Scenario emulator on {emulator.base_url}")
        hook = ScenarioHook()
        video = hook.upload_asset(io.BytesIO(b"\0" * 64_000), file_name="face.mp4")
        audio = hook.upload_asset(io.BytesIO(b"\0" * 16_000), file_name="voice.mp3")
        print(f"uploaded video {video} and audio {audio}")
        inputs = {"videoUrl": video, "audioFile": audio}
        estimate = hook.run_model("model_kling-lip-sync", inputs, dry_run=True)["creativeUnitsCost"]
        submitted = hook.run_model("model_kling-lip-sync", inputs)
        job_id = submitted["job"]["jobId"]
        print(f"submitted job {job_id} (estimate {estimate} CU, billed {submitted['creativeUnitsCost']} CU)")
        while True:
            job = hook.get_job(job_id)
            print(f"  {job['status']:<12} {job['progress']:.0%}")
            if is_terminal(job["status"]):
                break
            time.sleep(0.5)
        if job["status"] != "success":
            print(f"job ended {job['status']}: {job_error_text(job)}", file=sys.stderr)
            return 1
        (asset_id,) = job_asset_ids(job)
        target = OUTPUT_DIR / f"{job_id}.mp4"
        response = hook.session.get(hook.get_download_url(asset_id), timeout=60)
        response.raise_for_status()
        target.write_bytes(response.content)
        print(f"downloaded {asset_id} to {target} ({target.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
