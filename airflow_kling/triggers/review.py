"""The review's wait for a person's answer.

Airflow's human-in-the-loop trigger, kept from firing in the first seconds after the pause, when an event
meets Airflow's scheduler race (apache/airflow #67287).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.triggers.hitl import HITLTrigger

if TYPE_CHECKING:
    from airflow.triggers.base import TriggerEvent


class ReviewTrigger(HITLTrigger):
    """``HITLTrigger`` that looks for the answer no sooner than ``not_before``.

    An answer given at once (a reviewer with the page open, a QA tool over REST) is applied then, rather than
    fail the resumed try.

    :param not_before: epoch seconds before which the first look is not made.
    :param kwargs: ``HITLTrigger``'s, as its ``serialize`` gives them.
    """

    def __init__(self, *, not_before: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.not_before = float(not_before)

    @classmethod
    def replacing(cls, trigger: HITLTrigger, not_before: float) -> ReviewTrigger:
        """The same wait as ``trigger`` (its serialized arguments), from ``not_before`` on."""
        _, kwargs = trigger.serialize()
        return cls(not_before=not_before, **kwargs)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """This class's path and ``HITLTrigger``'s arguments with ``not_before``."""
        _, kwargs = super().serialize()
        return f"{type(self).__module__}.{type(self).__qualname__}", {**kwargs, "not_before": self.not_before}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait until ``not_before``, then as ``HITLTrigger`` does: an answer, or the timeout's default."""
        await asyncio.sleep(max(0.0, self.not_before - time.time()))
        async for event in super().run():
            yield event
