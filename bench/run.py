"""``make bench``: every benchmark, each against its alternative measured in the same run."""

from __future__ import annotations

import argparse

from bench import archive, batch, media, parse_cost, triggerer, worker_slots
from bench.common import describe_machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one repetition of each, for a smoke run")
    args = parser.parse_args()
    repeat = ["--repeat", "1" if args.quick else "3"]
    print(f"# airflow-provider-kling benchmarks on {describe_machine()}")
    media.main(repeat)
    archive.main(repeat)
    triggerer.main(["--jobs", "100,1000" if args.quick else "100,1000,5000"])
    worker_slots.main(["--job-seconds", "10" if args.quick else "30"])
    parse_cost.main(["--repeat", "3" if args.quick else "7"])
    quick_batch = ["--clips", "8", "--limit", "2", "--job-seconds", "15", "--deployments", "standalone"]
    batch.main(quick_batch if args.quick else [])


if __name__ == "__main__":
    main()
