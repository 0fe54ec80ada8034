"""The operator extra link to a job in Scenario's web app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

JOB_URL_XCOM_KEY = "scenario_job_url"
JOB_ID_XCOM_KEY = "scenario_job_id"


class ScenarioJobLink(BaseOperatorLink):
    """ "Scenario job": the submitted job in Scenario's web app, pushed to XCom as soon as it exists."""

    name = "Scenario job"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        url = XCom.get_value(ti_key=ti_key, key=JOB_URL_XCOM_KEY)
        return str(url) if url else ""
