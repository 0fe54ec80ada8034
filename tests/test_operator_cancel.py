"""Killing a task cancels its remote job; a refused cancel is logged, never raised over the original error."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from airflow_kling.emulator import EmulatorServer
from airflow_kling.hooks.scenario import ScenarioHook
from airflow_kling.operators.kling_lipsync import KlingLipsyncOperator
from tests.media_samples import submit_text_job

# On every line: the cancel path.
pytestmark = pytest.mark.every_line


def test_on_kill_cancels_the_job(scenario_emulator: EmulatorServer) -> None:
    operator = KlingLipsyncOperator(task_id="t", video_asset_id="asset_v", text="hi")
    operator.job_id = submit_text_job(scenario_emulator, outcome="stuck")
    operator.on_kill()
    assert ScenarioHook().get_job(operator.job_id)["status"] == "canceled"


def test_a_refused_cancel_is_logged(
    scenario_emulator: EmulatorServer, captured_logs: Callable[[], str]
) -> None:
    operator = KlingLipsyncOperator(task_id="t", video_asset_id="asset_v", text="hi")
    operator.job_id = submit_text_job(scenario_emulator, outcome="stuck")
    scenario_emulator.add_fault(
        "/action$", status=400, body={"message": "Only inference jobs can be canceled"}
    )
    operator.on_kill()
    assert "Could not cancel Scenario job" in captured_logs()
    assert "Only inference jobs can be canceled" in captured_logs()
    assert ScenarioHook().get_job(operator.job_id)["status"] == "in-progress"


def test_on_kill_before_submission_does_nothing(scenario_emulator: EmulatorServer) -> None:
    KlingLipsyncOperator(task_id="t", video_asset_id="asset_v", text="hi").on_kill()
    assert scenario_emulator.store.requests() == []
