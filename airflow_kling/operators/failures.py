"""Errors that no retry can fix end the task at once, whatever its ``retries``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from airflow_kling.exceptions import MediaError, ScenarioResponseError, ScenarioValidationError
from airflow_kling.version_compat import AirflowFailException


@contextmanager
def invalid_input_fails_task() -> Iterator[None]:
    """Raise input errors as ``AirflowFailException``, so that the task fails on this try.

    Those are :class:`ScenarioValidationError` (bad arguments), :class:`MediaError` (a file that is not media
    or cannot be made to fit) and :class:`ScenarioResponseError` (an answer of a shape the provider will not
    act on): the same input fails the same way on every try, so the task fails on this one instead of sitting
    through its retries and their delays.
    """
    try:
        yield
    except (ScenarioValidationError, MediaError, ScenarioResponseError) as error:
        raise AirflowFailException(str(error)) from None
