"""Chaos mode.

Faults drawn at random from those each route meets in production, seeded so that a failing run replays.

Whether the n-th request on a route meets a fault, and which, depends only on the seed, the route and n (not on
how requests of different routes interleave), so one seed gives the same faults to the same sequence of calls.
No route gets more than ``max_in_a_row`` faults in a row, so a client that retries as the official one does
always gets through; what it must not do is pay twice, lose a file or give up.
"""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from airflow_kling.emulator.store import Fault

CEILING = {"actionName": "parallel-custom-jobs", "actionLimit": 2}
EXPIRED = {"apiError": "AccessDenied: Request has expired", "message": "AccessDenied: Request has expired"}

KINDS: dict[str, Fault] = {
    "429-retry-after": Fault("", status=429, headers={"Retry-After": "1"}),
    "429-ceiling": Fault(
        "",
        status=429,
        body={"apiError": "Too many parallel jobs", "message": "Too many parallel jobs", "details": CEILING},
    ),
    "500": Fault("", status=500),
    "502": Fault("", status=502),
    "503": Fault("", status=503),
    "504": Fault("", status=504),
    "drop": Fault("", action="drop"),
    "lost-502": Fault("", status=502, after=True),
    "lost-drop": Fault("", action="drop", after=True),
    "truncate": Fault("", action="truncate"),
    "ignore-range": Fault("", action="ignore-range"),
    "wrong-range": Fault("", action="wrong-range"),
    "expired": Fault("", status=403, body=EXPIRED),
}
"""Every kind of fault chaos injects: an answer other than the real one, a dropped connection, a lost answer
*after* the request took effect (``lost-``), half a file, a file host that ignores or misplaces ranges, a
signed URL that has expired."""

READS = ["429-retry-after", "500", "502", "503", "504", "drop"]
ROUTES: list[tuple[str, str, str, list[str]]] = [
    (
        "generate",
        "POST",
        r"^/v1/generate/",
        ["429-retry-after", "429-ceiling", "500", "503", "504", "drop", "lost-502", "lost-drop"],
    ),
    ("jobs", "GET", r"^/v1/jobs", READS),
    ("upload-create", "POST", r"^/v1/uploads$", ["429-retry-after", "500", "503", "lost-502"]),
    ("upload-action", "POST", r"^/v1/uploads/[^/]+/action$", ["500", "503", "lost-502"]),
    ("upload-read", "GET", r"^/v1/uploads/", READS),
    ("part", "PUT", r"^/_uploads/", ["500", "503", "drop"]),
    ("asset", "GET", r"^/v1/assets/", READS),
    ("download-url", "POST", r"^/v1/assets/[^/]+/download$", ["500", "503", "drop"]),
    ("file", "GET", r"^/_files/", ["truncate", "expired", "500", "drop", "ignore-range", "wrong-range"]),
]
"""Route name, method, path pattern and the kinds of fault that route meets. Cancelling a job is left alone:
a refused cancel only leaves a job running, which the tests count by other means."""


@dataclass
class Chaos:
    """Seeded random faults.

    :param seed: any integer; the same seed draws the same faults for the same calls on each route.
    :param rate: chance that a request meets a fault, from 0 to 1; default 0.2.
    :param max_in_a_row: faults at most in a row on one route; default 2 (under the hooks' 4 retries).
    :param routes: route names to trouble (see :data:`ROUTES`); default every one.
    """

    seed: int
    rate: float = 0.2
    max_in_a_row: int = 2
    routes: frozenset[str] | None = None
    injected: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Faults injected so far, by route and kind."""
    _seen: Counter[str] = field(default_factory=Counter)
    _in_a_row: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not 0 <= self.rate <= 1:
            raise ValueError(f"chaos rate must be from 0 to 1, got {self.rate}")
        if self.max_in_a_row < 0:
            raise ValueError(f"chaos max_in_a_row must be 0 or more, got {self.max_in_a_row}")
        unknown = set(self.routes or ()) - {name for name, *_ in ROUTES}
        if unknown:
            raise ValueError(f"chaos routes {sorted(unknown)} are not among {[name for name, *_ in ROUTES]}")

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Chaos:
        """From the JSON of ``/_emulator/settings`` (``{"chaos": {"seed": 7, "rate": 0.3}}``)."""
        options: dict[str, Any] = {}
        if "rate" in settings:
            options["rate"] = float(settings["rate"])
        if "max_in_a_row" in settings:
            options["max_in_a_row"] = int(settings["max_in_a_row"])
        if settings.get("routes"):
            options["routes"] = frozenset(settings["routes"])
        return cls(seed=int(settings["seed"]), **options)

    def draw(self, method: str, path: str) -> Fault | None:
        """The fault this request meets, if any (counted in :attr:`injected`)."""
        route = next(
            (
                (name, kinds)
                for name, route_method, pattern, kinds in ROUTES
                if route_method == method and re.search(pattern, path)
            ),
            None,
        )
        if route is None or (self.routes is not None and route[0] not in self.routes):
            return None
        name, kinds = route
        with self._lock:
            number = self._seen[name]
            self._seen[name] += 1
            draw = random.Random(f"{self.seed}:{name}:{number}")
            if self._in_a_row[name] >= self.max_in_a_row or draw.random() >= self.rate:
                self._in_a_row[name] = 0
                return None
            kind = draw.choice(kinds)
            self._in_a_row[name] += 1
            self.injected[(name, kind)] += 1
        template = KINDS[kind]
        return replace(template, path=path, method=method, headers=dict(template.headers))

    def report(self) -> dict[str, Any]:
        """What was injected, for the admin API and a soak's ledger."""
        with self._lock:
            return {
                "seed": self.seed,
                "rate": self.rate,
                "injected": sum(self.injected.values()),
                "by_route": {
                    f"{route} {kind}": count for (route, kind), count in sorted(self.injected.items())
                },
            }
