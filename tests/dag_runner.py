"""A process that runs ``airflow dags test`` many times without paying Airflow's start-up each time.

It imports Airflow, its CLI, the in-process execution API and the provider once, then forks a child for
each run: the child is ``airflow dags test`` as the command line runs it (same arguments, the environment of
the test that asked, its own output file), so a run is still a fresh process as far as the test can tell;
only the imports are shared. Run with ``python -m tests.dag_runner``: one JSON request per line on stdin
(``argv``, ``env``, ``output``), one JSON answer per line on stdout (the child's ``pid``, then its
``returncode``); it exits when stdin closes. ``python -m tests.dag_runner --once <argv>`` is one run, with no
fork and no preload.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any


def preload() -> None:
    """What every run imports or builds, done once before the first fork."""
    import airflow.__main__  # noqa: F401  (the CLI, its configuration and settings)
    from airflow.cli import cli_parser
    from airflow.sdk.execution_time import supervisor, task_runner  # noqa: F401

    cli_parser.get_parser()
    app = supervisor.in_process_api_server().app  # the execution API's FastAPI app, built once
    asyncio.run(_first_request(app))
    _keep_each_in_process_api()
    import airflow_kling.operators.assets
    import airflow_kling.operators.generate
    import airflow_kling.sensors.job
    import airflow_kling.triggers.job  # noqa: F401


async def _first_request(app: Any) -> None:
    """Send the execution API its first request, in a loop that ends before any fork.

    On its first request the app builds its versioned routes (cadwyn): about 4 s that every run's task would
    otherwise wait before it starts. The loop and its client are gone afterwards; only the built app is shared.
    """
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://in-process.invalid./") as client:
        await client.get("/execution/health")


def _keep_each_in_process_api() -> None:
    """Before Airflow 3.3, start each in-process execution API a task's supervisor makes, and keep it to the end.

    There (3.1.8, 3.2.2) ``InProcessExecutionAPI.transport`` starts the app's lifespan on another thread without
    waiting for it, and the lifespan is held by the ``InProcessExecutionAPI`` object, which the supervisor drops
    once it has the transport. A request sent before the lifespan has run, or after the collector has freed that
    object (which ends the lifespan), fails ("'State' object has no attribute 'svcs_registry'", the task's
    ``ServerResponseError``). 3.3 waits for the start and ties the lifespan to the transport, as this does.
    """
    import time

    from airflow.sdk.execution_time import supervisor

    from airflow_kling.version_compat import AIRFLOW_V_3_3_PLUS

    if AIRFLOW_V_3_3_PLUS:
        return
    build, kept = supervisor.in_process_api_server, []

    def in_process_api_server() -> Any:
        api = build()
        kept.append(api)
        api.transport  # noqa: B018  (starts the lifespan)
        deadline = time.monotonic() + 60
        while getattr(api.app.state, "svcs_registry", None) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the in-process execution API did not start within 60 s")
            time.sleep(0.005)
        return api

    supervisor.in_process_api_server = in_process_api_server


def run_child(request: dict[str, Any]) -> None:
    """In the forked child: become ``airflow <argv>`` with the request's environment and output."""
    import random

    from airflow import settings

    os.environ.clear()
    os.environ.update(request["env"])
    random.seed()
    if settings.engine is not None:
        settings.engine.dispose(close=False)  # the zygote's pooled connections are not the child's to use
    devnull = os.open(os.devnull, os.O_RDONLY)
    output = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(devnull, 0)
    os.dup2(output, 1)
    os.dup2(output, 2)
    sys.argv = ["airflow", *request["argv"]]
    code = 0
    try:
        from airflow.__main__ import main

        main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def serve() -> None:
    # The answers keep the pipe; anything else written to stdout (an import's warning) goes to stderr.
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    preload()
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            run_child(request)
        answers.write(json.dumps({"pid": pid}) + "\n")
        _, status = os.waitpid(pid, 0)
        answers.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")


def run_once(argv: list[str]) -> None:
    """``airflow <argv>`` in this process, with no preload: for a run whose environment differs from the
    server's (what it imports reads it); Airflow's in-process API kept alive as in a forked run."""
    _keep_each_in_process_api()
    sys.argv = ["airflow", *argv]
    from airflow.__main__ import main

    main()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--once"]:
        run_once(sys.argv[2:])
    else:
        serve()
