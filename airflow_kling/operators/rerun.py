"""Run a rejected clip's lipsync again, when the DAG's author asks for it.

A new DAG run for the clip, so a new paid job, on purpose and counted.

``KlingRerunRejectedOperator`` goes after a :class:`~airflow_kling.operators.review.KlingReviewOperator`.
When a reviewer rejected the clip (a timeout is no rejection: nobody watched it), it triggers a run of
``trigger_dag_id`` (by default this DAG) with ``conf`` (by default this run's) and, under ``kling_rerun``, the
rejected job ids, the reviewer's comment and how many re-runs led to it. A clip re-run ``max_reruns`` times
is not re-run again. Otherwise the task is skipped, saying why.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from typing_extensions import override

from airflow_kling.api.ids import checked_id
from airflow_kling.exceptions import ScenarioValidationError
from airflow_kling.jobs.xcoms import RERUN_XCOM_KEY
from airflow_kling.observability import metrics
from airflow_kling.operators.failures import invalid_input_fails_task
from airflow_kling.operators.links import KlingRerunLink
from airflow_kling.operators.review import (
    REVIEW_XCOM_KEY,
    cut_comment,
    pull_from_sibling,
    renders_false,
    sibling_task_id,
)
from airflow_kling.version_compat import AirflowSkipException

if TYPE_CHECKING:
    from airflow.sdk import Context

RERUN_CONF_KEY = "kling_rerun"
"""Where a re-run's conf says what it re-runs: ``of`` (job ids), ``comment``, ``count``."""
MAX_REJECTED_JOBS = 100
"""Job ids a review's XCom may name for one re-run, at most (a review asks about one clip's jobs)."""


class KlingRerunRejectedOperator(BaseOperator):
    """Trigger a new run for a clip its reviewer rejected; skipped for any other outcome.

    The run is triggered by the standard provider's ``TriggerDagRunOperator``, imported only when a re-run is
    due (importing it loads Airflow's database models: a third of a second on every parse of the DAG file).
    The "Re-run" link of the task opens the run it triggered.

    :param review_task_id: the review task, in the same task group (and map index); default ``review``.
    :param trigger_dag_id: the DAG to run; default this one. Templated.
    :param conf: the new run's conf; default this run's. ``kling_rerun`` is added: ``of`` (the rejected job
        ids), ``comment`` (the reviewer's), ``count`` (re-runs so far, this one included). Templated.
    :param rerun: whether to re-run at all; when it renders false (``False``, ``"False"``, ``""``) the task is
        skipped (a DAG whose re-run is a run's choice); default ``True``. Templated.
    :param max_reruns: re-runs of one clip in a row at most (counted through ``kling_rerun.count`` of the
        conf); default 1.
    :param kwargs: ``BaseOperator``'s; ``trigger_rule`` defaults to ``none_failed``: it runs after a review
        that approved or was skipped (a rejection skips it), and a review that failed leaves it
        ``upstream_failed``, so the run fails rather than end in success. The new run's id is
        ``kling_rerun__<first job id>`` and an existing one is not triggered twice (a retry of this task pays
        nothing more).
    """

    template_fields: Sequence[str] = ("trigger_dag_id", "conf", "rerun")
    operator_extra_links = (KlingRerunLink(),)
    ui_color = "#fde68a"

    def __init__(
        self,
        *,
        review_task_id: str = "review",
        trigger_dag_id: str = "{{ dag.dag_id }}",
        conf: dict[str, Any] | str | None = None,
        rerun: bool | str = True,
        max_reruns: int = 1,
        **kwargs: Any,
    ) -> None:
        if not isinstance(max_reruns, int) or isinstance(max_reruns, bool) or max_reruns < 1:
            raise ValueError(
                f"KlingRerunRejectedOperator max_reruns={max_reruns!r} must be a whole number >= 1"
            )
        kwargs.setdefault("trigger_rule", "none_failed")
        super().__init__(**kwargs)
        self.trigger_dag_id = trigger_dag_id
        self.conf = conf
        self.review_task_id = review_task_id
        self.rerun = rerun
        self.max_reruns = max_reruns

    @override
    def execute(self, context: Context) -> Any:
        if renders_false(self.rerun):
            raise AirflowSkipException("No re-run asked for")
        review = pull_from_sibling(
            context, sibling_task_id(self.task_id, self.review_task_id), REVIEW_XCOM_KEY
        )
        decision = review.get("decision") if isinstance(review, dict) else None
        if decision != "rejected":
            raise AirflowSkipException(f"The clip was not rejected by a reviewer ({decision or 'no review'})")
        listed = review.get("job_ids")
        with invalid_input_fails_task():
            if not isinstance(listed, list):
                raise ScenarioValidationError(
                    f"The review's job_ids must be a list of rejected job ids, got {str(listed)[:80]!r}"
                )
            if len(listed) > MAX_REJECTED_JOBS:
                raise ScenarioValidationError(
                    f"The review's job_ids name {len(listed)} jobs, more than the {MAX_REJECTED_JOBS} one re-run "
                    "takes"
                )
            job_ids = [checked_id(job_id, "rejected job id") for job_id in listed]
        if not job_ids:
            raise AirflowSkipException("The review names no job: nothing to re-run")
        run_conf = dict(context["dag_run"].conf or {})
        done = _reruns_so_far(run_conf.get(RERUN_CONF_KEY))
        if done is None:
            raise AirflowSkipException(
                f"This run's conf has a {RERUN_CONF_KEY} without a count of re-runs: not re-running"
            )
        if done >= self.max_reruns:
            raise AirflowSkipException(
                f"The clip of job {job_ids[0]} was re-run {done} time(s) already (max_reruns={self.max_reruns}): "
                "not again"
            )
        base = self.conf if self.conf is not None else run_conf
        with invalid_input_fails_task():
            base = _conf_mapping(base)
        conf = {
            **base,
            RERUN_CONF_KEY: {
                "of": job_ids,
                "comment": cut_comment(review.get("comment")),
                "count": done + 1,
            },
        }
        run_id = f"kling_rerun__{job_ids[0]}"
        context["ti"].xcom_push(key=RERUN_XCOM_KEY, value={"dag_id": self.trigger_dag_id, "run_id": run_id})
        metrics.rerun()
        self.log.info(
            "The clip of job %s was rejected: running %s again as run %s (a new paid job; re-run %d of at most %d)",
            ", ".join(job_ids),
            self.trigger_dag_id,
            run_id,
            done + 1,
            self.max_reruns,
        )
        from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

        trigger = TriggerDagRunOperator(
            task_id=self.task_id,
            trigger_dag_id=self.trigger_dag_id,
            trigger_run_id=run_id,
            conf=conf,
            skip_when_already_exists=True,
        )
        return trigger.execute(context)


def _conf_mapping(value: object) -> dict[str, Any]:
    """A conf given as a mapping or its JSON text, as a dict."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ScenarioValidationError("conf must be a mapping or its JSON text") from None
    if not isinstance(value, dict):
        raise ScenarioValidationError(f"conf must be a mapping, got {type(value).__name__}")
    return dict(value)


def _reruns_so_far(previous: object) -> int | None:
    """``kling_rerun.count`` of a run's conf.

    0 without ``kling_rerun``; ``None`` when it is there but holds no whole number (whoever triggers a run
    writes its conf).
    """
    if previous is None:
        return 0
    count = previous.get("count") if isinstance(previous, dict) else None
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return count
    return None
