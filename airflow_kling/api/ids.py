"""The shape of Scenario's ids (``job_...``, ``asset_...``).

What an id from an API answer must look like before the provider puts it in a path, a URL or a file name.
"""

from __future__ import annotations

import re
from typing import TypeGuard

from airflow_kling.exceptions import ScenarioResponseError

ID_PATTERN = re.compile(r"^[a-z]+_[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
"""A lowercase prefix, an underscore, then at most 128 letters, digits, ``_`` and ``-``: no dot, no slash."""


def is_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a text of the shape of a Scenario id (:data:`ID_PATTERN`)."""
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def checked_id(value: object, what: str) -> str:
    """``value`` when it has the shape of a Scenario id.

    :param what: what the value is (``"asset id"``, ``"metadata.parentJobId"``), named in the error.
    :raises ScenarioResponseError: naming ``what`` and the value (shortened), before anything uses it.
    """
    if is_id(value):
        return value
    raise ScenarioResponseError(
        f"The API answered a {what} of another shape than Scenario's ids ({ID_PATTERN.pattern}): "
        f"{str(value)[:80]!r}; nothing was written"
    )


def short_id(value: str) -> str:
    """An id as a person compares them: its first 10 characters (``job_zIV4w2``) and ``...``, when longer."""
    return value if len(value) <= 12 else f"{value[:10]}..."
