"""What this provider adds to DAG parsing.

Importing its operators, and each example DAG file, on top of an ``airflow.sdk`` import that every DAG file
pays anyway. Median of cold runs, each in a fresh interpreter.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from bench.common import describe_machine, print_table

ROOT = Path(__file__).resolve().parent.parent
MODULES = [
    "airflow_kling.operators.generate",
    "airflow_kling.operators.media",
    "airflow_kling.operators.assets",
    "airflow_kling.operators.review",
    "airflow_kling.operators.rerun",
    "airflow_kling.sensors.job",
]
TIMED = (
    "import sys, time, runpy, importlib\n"
    "import airflow.sdk\n"
    "from airflow.sdk import DAG, BaseOperator, task\n"
    "started = time.perf_counter()\n"
    "target = sys.argv[1]\n"
    "runpy.run_path(target) if target.endswith('.py') else importlib.import_module(target)\n"
    "print(time.perf_counter() - started)\n"
)


def added_ms(target: str, runs: int) -> tuple[float, float, float]:
    samples = []
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-c", TIMED, target], capture_output=True, text=True, check=True
        )
        samples.append(float(result.stdout.strip().splitlines()[-1]) * 1000)
    return statistics.median(samples), min(samples), max(samples)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    targets = MODULES + [str(path) for path in sorted((ROOT / "dags").glob("*.py"))]
    rows = []
    for target in targets:
        median, low, high = added_ms(target, args.repeat)
        name = Path(target).name if target.endswith(".py") else target
        rows.append([name, f"{median:.1f} ms ({low:.1f}-{high:.1f})", "yes" if median < 50 else "NO"])
    print_table(
        f"DAG parse cost added on top of `import airflow.sdk` (median of {args.repeat} cold runs) on {describe_machine()}",
        ["import", "added", "under 50 ms"],
        rows,
    )


if __name__ == "__main__":
    main()
