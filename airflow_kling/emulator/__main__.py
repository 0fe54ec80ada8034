"""``python -m airflow_kling.emulator``: serve the Scenario API emulator in the foreground."""

from __future__ import annotations

import argparse

from airflow_kling.emulator.chaos import Chaos
from airflow_kling.emulator.server import serve_forever
from airflow_kling.emulator.store import EmulatorConfig


def main(argv: list[str] | None = None) -> None:
    """Serve the emulator until interrupted; ``argv`` as on the command line (``--help`` lists them)."""
    defaults = EmulatorConfig()
    parser = argparse.ArgumentParser(prog="python -m airflow_kling.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=8089, help="port (default %(default)s)")
    parser.add_argument("--api-key", default=defaults.api_key, help="API key accepted (default %(default)s)")
    parser.add_argument(
        "--api-secret", default=defaults.api_secret, help="API secret accepted (default %(default)s)"
    )
    parser.add_argument(
        "--job-seconds",
        type=float,
        default=defaults.job_seconds,
        help="seconds a job takes from queued to success (default %(default)s)",
    )
    parser.add_argument(
        "--url-ttl",
        type=float,
        default=defaults.url_ttl,
        help="seconds a signed URL stays valid (default %(default)s)",
    )
    parser.add_argument(
        "--team-job-limit",
        type=int,
        default=None,
        help="custom jobs the team may run at once; past it generate answers 429 (default: no limit)",
    )
    parser.add_argument(
        "--chaos-seed",
        type=int,
        default=None,
        help="chaos mode: random faults drawn from this seed on every route (default: off)",
    )
    parser.add_argument(
        "--chaos-rate",
        type=float,
        default=Chaos.rate,
        help="chaos mode: chance that a request meets a fault, 0-1 (default %(default)s)",
    )
    args = parser.parse_args(argv)
    config = EmulatorConfig(
        api_key=args.api_key,
        api_secret=args.api_secret,
        job_seconds=args.job_seconds,
        url_ttl=args.url_ttl,
        team_job_limit=args.team_job_limit,
    )
    chaos = None if args.chaos_seed is None else Chaos(seed=args.chaos_seed, rate=args.chaos_rate)
    serve_forever(args.host, args.port, config, chaos=chaos)


if __name__ == "__main__":
    main()
