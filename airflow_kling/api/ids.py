"""The shape of Scenario's ids (``job_...``, ``asset_...``) and of model ids.

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


MODEL_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
"""A model id: the contract gives it no shape (Scenario's own are ``model_...``), so at most 128 letters, digits,
``_``, ``.``, ``:`` and ``-``, the first a letter or a digit: no slash, no space, no line break."""


def is_model_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a text of the shape of a model id (:data:`MODEL_ID_PATTERN`)."""
    return isinstance(value, str) and MODEL_ID_PATTERN.fullmatch(value) is not None


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
