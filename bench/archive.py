"""Archiving a 200 MB asset from the emulator.

``archive_assets`` to local disk and to S3 (moto on loopback), against ``curl`` and a plain ``requests``
stream of the same signed URL, in the same run.

Each transfer runs in its own process, measured for wall time (throughput) and peak RSS; medians of
``--repeat`` runs. Ours also hashes (SHA-256), verifies and renames atomically, and writes a manifest.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from bench.common import Measure, describe_machine, median_spread, print_table, run_measured

SIZE = 200 * 1024 * 1024

# Each Python contender writes the seconds its transfer took (imports excluded) to the file in argv[-1].
OURS = (
    "import sys, time; from airflow_kling.files.archive import archive_assets; from airflow_kling.hooks.scenario import "
    "ScenarioHook; from airflow_kling.files.storage import storage_path; hook = ScenarioHook(); hook.config; "
    "started = time.perf_counter(); "
    "archive_assets(hook, [sys.argv[1]], storage_path(sys.argv[2], sys.argv[3] or None)); "
    "open(sys.argv[4], 'w').write(str(time.perf_counter() - started))"
)
REQUESTS = (
    "import sys, time, requests\n"
    "started = time.perf_counter()\n"
    "with requests.get(sys.argv[1], stream=True) as r, open(sys.argv[2], 'wb') as out:\n"
    "    for chunk in r.iter_content(1 << 20): out.write(chunk)\n"
    "open(sys.argv[3], 'w').write(str(time.perf_counter() - started))\n"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    from airflow_kling.emulator import run_emulator

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
    moto_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{moto_port}"
    s3_env = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(s3_env)
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench")
    rows = []
    try:
        with (
            tempfile.TemporaryDirectory(prefix="kling-bench-archive-") as directory,
            run_emulator() as emulator,
        ):
            work = Path(directory)
            source = work / "big.mp4"
            with source.open("wb") as out:
                for _ in range(SIZE // (1 << 20)):
                    out.write(os.urandom(1 << 20))
            asset_id = emulator.store.add_asset(source, kind="video", mime_type="video/mp4")
            env = {
                **os.environ,
                "AIRFLOW_CONN_SCENARIO_DEFAULT": emulator.connection_uri(),
                "AIRFLOW_CONN_BENCH_S3": json.dumps(
                    {
                        "conn_type": "aws",
                        "login": "bench",
                        "password": "bench",
                        "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
                    }
                ),
            }
            url_of = f"{emulator.base_url}/assets/{asset_id}"
            import requests

            auth = (emulator.config.api_key, emulator.config.api_secret)
            contenders: dict[str, list[Measure]] = {}
            transfer: dict[str, list[float]] = {}
            timing = work / "seconds.txt"

            def measure(name: str, command: list[str], cleanup: Path | None = None) -> None:
                if cleanup is not None:
                    shutil.rmtree(cleanup, ignore_errors=True)
                timing.unlink(missing_ok=True)
                result = run_measured(command, env=env)
                contenders.setdefault(name, []).append(result)
                seconds = float(timing.read_text()) if timing.exists() else result.wall
                transfer.setdefault(name, []).append(seconds)

            for run in range(args.repeat):
                url = requests.get(url_of, auth=auth, timeout=10).json()["asset"]["url"]
                if shutil.which("curl"):
                    measure("curl -o (local disk)", ["curl", "-sS", "-o", str(work / "curl.mp4"), url])
                measure(
                    "requests stream (local disk)",
                    [sys.executable, "-c", REQUESTS, url, str(work / "req.mp4"), str(timing)],
                )
                measure(
                    "archive_assets (local disk)",
                    [sys.executable, "-c", OURS, asset_id, str(work / "ours"), "", str(timing)],
                    cleanup=work / "ours",
                )
                measure(
                    "archive_assets (S3, moto)",
                    [sys.executable, "-c", OURS, asset_id, f"s3://bench/run{run}", "bench_s3", str(timing)],
                )
    finally:
        moto.stop()
    baseline = median_spread(transfer["requests stream (local disk)"])[0]
    curl = median_spread(transfer["curl -o (local disk)"])[0] if "curl -o (local disk)" in transfer else None
    for name, measures in contenders.items():
        seconds, low, high = median_spread(transfer[name])
        rows.append(
            [
                name,
                f"{seconds:.2f} s ({low:.2f}-{high:.2f})",
                f"{SIZE / seconds / 1e6:.0f} MB/s",
                f"{baseline / seconds:.2f}x",
                f"{curl / seconds:.2f}x" if curl else "n/a",
                f"{median_spread([m.wall for m in measures])[0]:.2f} s",
                f"{median_spread([m.peak_mib for m in measures])[0]:.0f} MiB",
            ]
        )
    print_table(
        f"Archive a 200 MiB asset (median of {args.repeat}, min-max) on {describe_machine()}",
        [
            "transfer",
            "transfer time",
            "throughput",
            "speed vs requests stream",
            "speed vs curl -o",
            "process wall",
            "peak RSS",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
