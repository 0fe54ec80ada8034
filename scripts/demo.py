"""The README's demo: the example pipeline end to end against a local Scenario emulator, offline.

Starts the emulator, runs ``kling_lipsync_pipeline`` with ``airflow dags test`` on SQLite in
``.demo/airflow``, prints where the archived video and its manifest are, and stops the emulator.
Set AIRFLOW_CONN_SCENARIO_DEFAULT (or SCENARIO_SDK_API_KEY and SCENARIO_SDK_API_SECRET) to real credentials and
pass ``--real`` to run against the real API.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from airflow_kling.hooks.connection import API_KEY_ENV, API_SECRET_ENV

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
DAG_ID = "kling_lipsync_pipeline"


def airflow(*arguments: str, env: dict[str, str], quiet: bool = True) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("airflow")), *arguments]
    result = subprocess.run(command, env=env, text=True, capture_output=quiet, check=False)
    if result.returncode != 0:
        if quiet:
            print(result.stdout[-5000:], result.stderr[-5000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"airflow {' '.join(arguments)} failed with exit code {result.returncode}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--real",
        action="store_true",
        help="use the real API (AIRFLOW_CONN_SCENARIO_DEFAULT or SCENARIO_SDK_API_KEY/_SECRET), not the emulator",
    )
    parser.add_argument("--conf", default="{}", help='DAG run conf as JSON, e.g. \'{"text": "Hello!"}\'')
    args = parser.parse_args()
    home = DEMO / "airflow"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    archive = DEMO / "archive"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    }
    with ExitStack() as stack:
        if not args.real:
            from airflow_kling.emulator import run_emulator

            emulator = stack.enter_context(run_emulator(job_seconds=6))
            env["AIRFLOW_CONN_SCENARIO_DEFAULT"] = emulator.connection_uri()
            print(f"Scenario emulator on {emulator.base_url}")
        elif "AIRFLOW_CONN_SCENARIO_DEFAULT" not in env and not (
            env.get(API_KEY_ENV) and env.get(API_SECRET_ENV)
        ):
            raise SystemExit(
                f"--real needs your API key and secret: AIRFLOW_CONN_SCENARIO_DEFAULT, or {API_KEY_ENV} and "
                f"{API_SECRET_ENV} (as the hook reads them)"
            )
        print(f"Airflow home {home} (SQLite); migrating the database...")
        airflow("db", "migrate", env=env)
        airflow("dags", "reserialize", env=env)
        conf = {"destination": str(archive), **json.loads(args.conf)}
        print(f"Running {DAG_ID} with airflow dags test, conf {json.dumps(conf)}")
        airflow("dags", "test", DAG_ID, "-c", json.dumps(conf), env=env, quiet=False)
    manifests = sorted(archive.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
    if not manifests:
        print("No archived video found: see the task logs above.", file=sys.stderr)
        return 1
    manifest = json.loads(manifests[-1].read_text())
    print("\nDone.")
    for entry in manifest["files"]:
        print(f"  archived video: {entry['uri']} ({entry['size']} bytes, sha256 {entry['sha256'][:16]}...)")
    print(f"  manifest:       {manifests[-1]}")
    print(f"  job {manifest['job_id']}: {manifest['creative_units_cost']} creative units")
    return 0


if __name__ == "__main__":
    sys.exit(main())
