"""The example DAGs and the provider on a distributed Airflow (see :mod:`tests.cluster`): Celery workers that
share no local file, two triggerers, PostgreSQL and Redis, with S3 (moto on loopback) as the shared ``work``
and archive storage. Each case is checked on the emulator's books, in the bucket and in Airflow's own
records (task instance states and hostnames, the triggerer that holds each trigger)."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_kling.emulator import EmulatorServer
from tests.cluster import Cluster, running_cluster
from tests.deployments import emulator, scenario_emulator
from tests.s3 import BUCKET, environment, keys, put_clips, s3

REPO = Path(__file__).parent.parent
__all__ = ["emulator", "s3", "scenario_emulator"]  # the shared fixtures, one emulator and bucket per module
pytestmark = pytest.mark.xdist_group("cluster")  # one worker holds the cluster
POLICY = '''
"""Pins tasks to workers, so that a file handed from one task to the next must cross machines."""

PINNED = {
    ("kling_lipsync_pipeline", "prepare"): "worker-1",
    ("kling_lipsync_pipeline", "upload_video"): "worker-2",
    ("kling_lipsync_pipeline", "upload_audio"): "worker-2",
}


def task_policy(task):
    queue = PINNED.get((task.dag_id, task.task_id))
    if queue:
        task.queue = queue
'''


@pytest.fixture(scope="module")
def cluster(emulator: EmulatorServer, s3: Any) -> Iterator[Cluster]:
    connections = {
        "AIRFLOW_CONN_SCENARIO_DEFAULT": emulator.connection_uri(),
        # S3 credentials as a worker on EC2 or EKS gets them: from the environment, not an Airflow connection.
        **environment(s3),
    }
    dag_files = [*sorted((REPO / "dags").glob("*.py")), REPO / "tests" / "dags" / "provider_test_dags.py"]
    with running_cluster(dag_files, connections, POLICY) as started:
        yield started


@pytest.fixture
def books(scenario_emulator: EmulatorServer) -> EmulatorServer:
    """The emulator with its books emptied for one case."""
    scenario_emulator.store.config.job_seconds = 4.0
    return scenario_emulator


def test_batch_on_celery_archives_every_good_clip_and_names_the_bad_one(
    cluster: Cluster, books: EmulatorServer, s3: Any
) -> None:
    assert cluster.deployment is not None
    put_clips(s3, BUCKET, "batch-1/clips", [f"clip-{n}" for n in range(5)], broken="clip-9-broken")
    run_id = cluster.deployment.trigger(
        "kling_lipsync_batch",
        {
            "source": f"s3://{BUCKET}/batch-1/clips",
            "work": f"s3://{BUCKET}/batch-1/work",
            "destination": f"s3://{BUCKET}/batch-1/archive",
        },
    )
    state = cluster.wait_for_run("kling_lipsync_batch", run_id)
    tasks = cluster.task_instances("kling_lipsync_batch", run_id)
    assert state == "failed", f"{tasks}\n{cluster.logs()}"
    by_task: dict[str, list[str]] = {}
    for ti in tasks:
        by_task.setdefault(ti["task_id"], []).append(ti["state"])
    assert by_task["clip.prepare_and_upload"] == ["success"] * 5 + ["failed"], tasks
    assert by_task["clip.archive"] == ["success"] * 5 + ["upstream_failed"], tasks
    assert by_task["report"] == ["failed"]
    assert len(books.store.paid_submissions()) == 5 == len(books.store.jobs)  # one paid job per good clip
    archived = keys(s3, BUCKET, "batch-1/archive/")
    assert sorted(key.rsplit("/", 2)[1] for key in archived if key.endswith("manifest.json")) == sorted(
        books.store.jobs
    )
    assert sum(key.endswith(".mp4") for key in archived) == 5
    hostnames = {ti["hostname"] for ti in tasks if ti["task_id"] == "clip.prepare_and_upload"}
    assert hostnames <= {"worker-1", "worker-2"}
    report_log = "\n".join(
        path.read_text(errors="replace")
        for path in cluster.root.glob("worker-*/logs/**/task_id=report/**/*.log")
    )
    assert "1 of 6 clip(s) failed: clip-9-broken (failed at prepare_and_upload:" in report_log


def test_pipeline_hands_files_between_workers_through_s3(
    cluster: Cluster, books: EmulatorServer, s3: Any
) -> None:
    assert cluster.deployment is not None
    run_id = cluster.deployment.trigger(
        "kling_lipsync_pipeline",
        {"work": f"s3://{BUCKET}/pipeline/work", "destination": f"s3://{BUCKET}/pipeline/archive"},
    )
    state = cluster.wait_for_run("kling_lipsync_pipeline", run_id)
    tasks = {ti["task_id"]: ti for ti in cluster.task_instances("kling_lipsync_pipeline", run_id)}
    assert state == "success", f"{tasks}\n{cluster.logs()}"
    assert tasks["prepare"]["hostname"] == "worker-1"
    assert tasks["upload_video"]["hostname"] == tasks["upload_audio"]["hostname"] == "worker-2"
    (job_id,) = books.store.jobs
    archived = keys(s3, BUCKET, "pipeline/archive/")
    assert [key for key in archived if key.endswith("manifest.json")] == [
        f"pipeline/archive/{job_id}/manifest.json"
    ]
    manifest = json.loads(
        s3.get_object(Bucket=BUCKET, Key=f"pipeline/archive/{job_id}/manifest.json")["Body"].read()
    )
    (entry,) = manifest["files"]
    video_key = entry["uri"].removeprefix(f"s3://{BUCKET}/")
    assert s3.head_object(Bucket=BUCKET, Key=video_key)["ContentLength"] == entry["size"] > 0
    assert any(
        key.endswith(".kling.mp4") for key in keys(s3, BUCKET, "pipeline/work/")
    )  # what prepare handed on


@pytest.mark.every_line  # 3.3 asks in on_kill, the older lines when run() is cancelled: both paths
def test_triggers_survive_a_killed_a_stopped_and_a_stalled_triggerer_without_a_cancel(
    cluster: Cluster, books: EmulatorServer, s3: Any
) -> None:
    assert cluster.deployment is not None
    books.store.config.job_seconds = 60.0
    put_clips(s3, BUCKET, "failover/clips", [f"clip-{n}" for n in range(8)])
    run_id = cluster.deployment.trigger(
        "kling_lipsync_batch",
        {
            "source": f"s3://{BUCKET}/failover/clips",
            "work": f"s3://{BUCKET}/failover/work",
            "destination": f"s3://{BUCKET}/failover/archive",
        },
    )
    deferred = cluster.wait_until(
        "8 deferred lipsyncs",
        lambda: (
            sum(
                ti["state"] == "deferred" and ti["task_id"] == "clip.lipsync"
                for ti in cluster.task_instances("kling_lipsync_batch", run_id)
            )
            == 8
            and sum(cluster.triggers_by_triggerer().values()) == 8
        ),
        limit=180,
    )
    assert deferred
    holder = max(cluster.triggers_by_triggerer().items(), key=lambda item: item[1])[0]
    survivor = "triggerer-2" if holder == "triggerer-1" else "triggerer-1"
    cluster.components[holder].signal(signal.SIGKILL)
    cluster.wait_until(
        f"{survivor} holding all 8 triggers", lambda: cluster.triggers_by_triggerer() == {survivor: 8}
    )

    cluster.components[survivor].stop()  # SIGTERM: a triggerer that stops is not a user's kill
    cluster.start_triggerer("triggerer-3")
    cluster.wait_until(
        "triggerer-3 holding all 8 triggers",
        lambda: cluster.triggers_by_triggerer() == {"triggerer-3": 8},
    )
    # A triggerer that stalls (SIGSTOP of its whole process tree: a paused container, a long GC pause) until
    # another holds every trigger, then comes back: it finds its triggers gone and cancels them in its loop
    # (on Airflow 3.3 through their on_kill, apache/airflow PR #73454). Their tasks are still deferred,
    # under the other triggerer: no job may be cancelled.
    cluster.start_triggerer("triggerer-4")
    cluster.components["triggerer-3"].signal(signal.SIGSTOP)
    cluster.wait_until(
        "triggerer-4 holding all 8 triggers",
        lambda: cluster.triggers_by_triggerer() == {"triggerer-4": 8},
    )
    cluster.components["triggerer-3"].signal(signal.SIGCONT)
    stalled = cluster.components["triggerer-3"]
    cluster.wait_until(
        "triggerer-3 back at work (its heartbeat in the database again) or ended by itself",
        lambda: not stalled.running() or cluster.triggerer_beating("triggerer-3"),
    )
    time.sleep(5)  # its loop has run again: the cancels it makes of triggers it lost
    assert books.store.requests("^/v1/jobs/[^/]+/action") == []
    books.store.config.job_seconds = 4.0

    state = cluster.wait_for_run("kling_lipsync_batch", run_id)
    assert state == "success", cluster.logs()
    assert len(books.store.paid_submissions()) == 8 == len(books.store.jobs)
    assert books.store.requests("^/v1/jobs/[^/]+/action") == []  # nothing was cancelled
    assert all(job.outcome == "success" for job in books.store.jobs.values())
    assert sum(key.endswith(".mp4") for key in keys(s3, BUCKET, "failover/archive/")) == 8


def test_a_killed_worker_s_retry_on_the_other_worker_adopts_the_job(
    cluster: Cluster, books: EmulatorServer
) -> None:
    from airflow_kling.hooks.scenario import ScenarioHook
    from tests.media_samples import sample_video

    assert cluster.deployment is not None
    books.store.config.job_seconds = 40.0
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_SCENARIO_DEFAULT", books.connection_uri())
        video = ScenarioHook().upload_asset(sample_video())
    run_id = cluster.deployment.trigger("kling_sync", {"video": video, "text": "hello there"})
    cluster.wait_until("the job submitted", lambda: len(books.store.jobs) == 1)
    ((hostname,),) = cluster.wait_until(
        "the task's worker recorded",
        lambda: cluster.sql(
            "SELECT hostname FROM task_instance WHERE dag_id = 'kling_sync' AND run_id = %s AND hostname <> ''",
            run_id,
        ),
    )
    other = "worker-2" if hostname == "worker-1" else "worker-1"
    cluster.components[hostname].signal(signal.SIGKILL)
    books.store.config.job_seconds = 4.0

    state = cluster.wait_for_run("kling_sync", run_id)
    (lipsync,) = cluster.task_instances("kling_sync", run_id)
    assert state == "success", f"{lipsync}\n{cluster.logs()}"
    assert lipsync["try_number"] == 2
    assert lipsync["hostname"] == other
    assert len(books.store.paid_submissions()) == 1 == len(books.store.jobs)  # the retry adopted the job


def test_a_short_soak_under_chaos_and_process_faults_keeps_its_ledger(
    cluster: Cluster, books: EmulatorServer, s3: Any
) -> None:
    """``make soak`` in small (see :mod:`tests.soak`): 6 clips, the team limit under the pool, random API
    faults (and a lost answer on the first submission), a worker killed right after a submission, a
    triggerer killed and one stalled while they hold jobs: every clip paid once and archived intact, no
    cancel, no signed URL or secret in any log."""
    from tests.soak import SoakPlan, run_soak

    plan = SoakPlan(seed=20261202, clips=6, job_seconds=8.0, chaos_rate=0.3, team_limit=3)
    ledger = run_soak(cluster, books, s3, BUCKET, plan, "soak")
    report = ledger.render()
    assert ledger.state == "success", f"{report}\n{cluster.logs()}"
    assert ledger.problems == [], f"{report}\n{cluster.logs()}"
    assert [row["jobs"] for row in ledger.clips] == [1] * 6, report
    assert all(row["archived"] == "archived intact (SHA-256)" for row in ledger.clips), report
    kinds = [line.split(": ", 1)[1].split(" ")[0] for line in ledger.injected]
    assert sorted(kinds) == ["SIGKILL", "SIGKILL", "SIGKILL", "SIGSTOP"], report  # every planned kill made
    assert ledger.chaos["injected"] >= 20, report
    assert ledger.refused > 0, report  # the ceiling was met
    assert ledger.peak_jobs <= 3, report
    assert books.store.requests("^/v1/jobs/[^/]+/action") == []
