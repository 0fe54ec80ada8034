"""The alternative a user would write without this provider.

The official client (``scenario-sdk``) in a plain mapped ``@task``, which submits a lipsync and polls it in
the worker, one pool slot per job (``bench/batch.py`` sets the pool ``kling_lipsync`` to the team's limit).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, task

with DAG("kling_bench_sdk", schedule=None, start_date=datetime(2026, 1, 1), params={"videos": []}):

    @task(pool="kling_lipsync")
    def lipsync(video: str) -> str:
        import json
        import os
        import time

        from scenario_sdk import Scenario

        connection = json.loads(os.environ["AIRFLOW_CONN_SCENARIO_DEFAULT"])
        client = Scenario(
            api_key=connection["login"], api_secret=connection["password"], base_url=connection["host"]
        )
        submitted = client.generate.run_model(
            "model_kling-lip-sync", body={"videoUrl": video, "text": "Hello"}
        ).job
        job_id, status = submitted.job_id, submitted.status
        while status not in ("success", "failure", "canceled"):
            time.sleep(5)  # the batch DAG's poll interval
            status = client.jobs.retrieve(job_id).job.status
        if status != "success":
            raise RuntimeError(f"job {job_id}: {status}")
        return str(job_id)

    @task
    def videos(params: dict[str, Any] | None = None) -> list[str]:
        assert params is not None
        return list(params["videos"])

    lipsync.expand(video=videos())
