"""What differs between the Airflow lines this provider supports (3.1 and newer), decided in this one place.

Every name Airflow moved between releases is imported here from where the running release keeps it, and
every feature that needs a newer release is switched on by a flag below, never by a ``try: import`` guess
elsewhere.

- ``AIRFLOW_V_3_2_PLUS``: ``airflow.sdk`` has ``conf``, the task exceptions and ``Stats`` (3.1 keeps them
  in ``airflow.configuration``, ``airflow.exceptions`` and ``airflow.stats``).
- ``AIRFLOW_V_3_3_PLUS``: the task's ``task_state_store`` (a submission's record outlives a try) and a
  trigger's ``async on_kill()`` (called when a user ends a deferred task). Before 3.3 the operators find
  an earlier try's job by its inputs (and an earlier run's of the same try: :func:`xcoms_cleared_at_start`),
  and the trigger asks for the task instance's state when it is cancelled (see
  :mod:`airflow_kling.triggers.job`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow import __version__ as _airflow_version
from packaging.version import Version

AIRFLOW_VERSION = Version(Version(_airflow_version).base_version)
AIRFLOW_V_3_2_PLUS = Version("3.2.0") <= AIRFLOW_VERSION
AIRFLOW_V_3_3_PLUS = Version("3.3.0") <= AIRFLOW_VERSION

if TYPE_CHECKING or AIRFLOW_V_3_2_PLUS:  # type-checked against the newest line
    from airflow.sdk import conf
    from airflow.sdk.exceptions import (
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSkipException,
    )
    from airflow.sdk.observability.stats import Stats
else:
    from airflow.configuration import conf
    from airflow.exceptions import (
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSkipException,
    )
    from airflow.stats import Stats


def xcoms_cleared_at_start(ti: Any) -> frozenset[str]:
    """The keys of the XComs an earlier run of this task instance left, which Airflow cleared as this run started.

    A try's first run finds none. Before 3.3 they are the one trace a run leaves for the next run of the same
    try: 3.1's scheduler, reading a deferral's late executor event once the task is queued to resume, fails it
    without a new try and clears its next method (apache/airflow #72716 and its kin); the queued run then starts
    over, and ``execute`` runs again with the same try number.
    Read from what the API server sent the run (``xcom_keys_to_clear``, every line since 3.0); empty when it
    sent none.
    """
    keys = getattr(getattr(ti, "_ti_context_from_server", None), "xcom_keys_to_clear", None)
    return frozenset(key for key in keys if isinstance(key, str)) if isinstance(keys, list) else frozenset()


HITL_REQUIREMENT = "Airflow 3.1+ with apache-airflow-providers-standard (its operators.hitl module)"
"""What the review step (:mod:`airflow_kling.operators.review`) needs: the human-in-the-loop operators."""


def require_hitl() -> type[Any]:
    """The standard provider's ``HITLOperator``, the base of the review step.

    :raises ImportError: naming what to install, when this Airflow has no human-in-the-loop operators: a
        DAG with a review step then fails to parse with that message, and never runs without its review.
    """
    try:
        from airflow.providers.standard.operators.hitl import HITLOperator
    except Exception as error:  # not installed (ImportError), or the provider's own refusal of this Airflow
        raise ImportError(
            f"The Kling review step needs Airflow's human-in-the-loop operators: install {HITL_REQUIREMENT} "
            f"({error})"
        ) from None
    return HITLOperator


__all__ = [
    "AIRFLOW_VERSION",
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "HITL_REQUIREMENT",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSkipException",
    "Stats",
    "conf",
    "require_hitl",
    "xcoms_cleared_at_start",
]
