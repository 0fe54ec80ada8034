"""The README's DAG, as a newcomer copies it: from a local clip and voice to an archived video, run for real
(``airflow dags test``) against the emulator."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from airflow_kling.emulator import EmulatorServer
from tests.airflow_runs import airflow_bin, dags_test
from tests.media_samples import sample_audio, sample_video
from tests.test_public_api import readme_snippets


def test_the_readmes_dag_archives_a_video_from_a_local_clip(
    scenario_emulator: EmulatorServer, airflow_home: Path, tmp_path: Path
) -> None:
    (dag,) = [code for code in readme_snippets() if 'with DAG(\n    "my_lipsync"' in code]
    (airflow_home / "dags" / "readme_dag.py").write_text(dag)
    subprocess.run([airflow_bin(), "dags", "reserialize"], check=True, capture_output=True, timeout=300)
    out = tmp_path / "out"
    run = dags_test(
        "my_lipsync", {"clip": str(sample_video()), "voice": str(sample_audio()), "out": str(out)}
    )
    assert set(run.states.values()) == {"success"}, run.output[-3000:]
    (job,) = scenario_emulator.store.jobs.values()
    assert set(job.inputs) == {"videoUrl", "audioFile"}
    manifest = json.loads((out / job.id / "manifest.json").read_text())
    (archived,) = manifest["files"]
    video = Path(archived["uri"].removeprefix("file://"))
    assert video.parent == out / job.id
    assert video.stat().st_size == archived["size"] > 0
    assert len(scenario_emulator.store.paid_submissions()) == 1
