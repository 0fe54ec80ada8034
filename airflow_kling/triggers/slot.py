"""The deferrable wait for a slot of the team's parallel jobs: fires once at a wall-clock time, so that
a submission refused at the team's limit waits in the triggerer, holding no worker slot and no try."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class ScenarioSlotTrigger(BaseTrigger):
    """Fire ``{"status": "slot_wait_over", "wake_at"}`` at ``wake_at`` (epoch seconds); at once when that
    has passed (a trigger taken over late by another triggerer). It makes no request and cancels nothing.
    """

    def __init__(self, wake_at: float) -> None:
        super().__init__()
        self.wake_at = float(wake_at)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}", {"wake_at": self.wake_at})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await asyncio.sleep(max(0.0, self.wake_at - time.time()))
        yield TriggerEvent({"status": "slot_wait_over", "wake_at": self.wake_at})
