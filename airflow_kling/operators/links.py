"""The operator extra links: a job in Scenario's web app, and the DAG run a re-run triggered."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom
from typing_extensions import override

from airflow_kling.jobs.xcoms import JOB_ID_XCOM_KEY, JOB_URL_XCOM_KEY, RERUN_XCOM_KEY
from airflow_kling.version_compat import conf

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

AIRFLOW_KEY = re.compile(r"^[A-Za-z0-9_.~:+-]{1,250}$")
"""The characters Airflow allows in a DAG id (and this provider's run ids)."""


def dag_run_url(dag_id: str, run_id: str) -> str:
    """A DAG run's page in Airflow's UI (under ``[api] base_url``), both ids quoted."""
    base = str(conf.get("api", "base_url", fallback="") or "").rstrip("/")
    return f"{base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


class ScenarioJobLink(BaseOperatorLink):
    """The "Scenario job" link: the submitted job's page in the web app; empty before any job.

    The page is in the web app of the operator's connection (``web_url``), built from the job id the task
    pushed, checked for Scenario's id shape.
    """

    name = "Scenario job"

    @override
    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow_kling.api.ids import checked_id
        from airflow_kling.exceptions import ScenarioError

        if not XCom.get_value(ti_key=ti_key, key=JOB_URL_XCOM_KEY):  # pushed empty until a job exists
            return ""
        # XComs anyone in the run can write: no address is taken from one, only a job id of Scenario's shape
        job_id = XCom.get_value(ti_key=ti_key, key=JOB_ID_XCOM_KEY)
        try:
            return str(operator.hook.config.job_web_url(checked_id(job_id, "job id")))  # type: ignore[attr-defined]
        except (ScenarioError, AttributeError):
            return ""


class KlingRerunLink(BaseOperatorLink):
    """The "Re-run" link: the DAG run triggered for a rejected clip; empty when there is none.

    The run is the one that :class:`~airflow_kling.operators.rerun.KlingRerunRejectedOperator` triggered.
    """

    name = "Re-run"

    @override
    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        rerun = XCom.get_value(ti_key=ti_key, key=RERUN_XCOM_KEY)
        if not isinstance(rerun, dict):
            return ""
        dag_id, run_id = rerun.get("dag_id"), rerun.get("run_id")
        if not all(isinstance(key, str) and AIRFLOW_KEY.match(key) for key in (dag_id, run_id)):
            return ""
        return dag_run_url(str(dag_id), str(run_id))
