"""The operator extra link to a job in Scenario's web app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

from airflow_kling.xcoms import JOB_URL_XCOM_KEY

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


class ScenarioJobLink(BaseOperatorLink):
    """ "Scenario job": the submitted job in Scenario's web app, pushed to XCom as soon as it exists."""

    name = "Scenario job"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        url = XCom.get_value(ti_key=ti_key, key=JOB_URL_XCOM_KEY)
        return str(url) if url else ""
