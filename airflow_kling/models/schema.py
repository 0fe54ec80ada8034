"""Check a model's inputs against its descriptor (``GET /models/{modelId}``'s ``model.inputs[]``).

The same rules for the live schema before a paid call, for a spec's own inputs when the live one cannot be
had, and in the emulator.

The checks: ``required`` (``always``, ``ifDefined``, ``ifNotDefined``), the input's ``type``,
``allowedValues``, ``min`` / ``max`` / ``step``, ``minLength`` / ``maxLength``, and for file inputs the
value's shape (an asset id or a data URL), the asset's ``kind``, ``maxSize`` against
``properties.size`` and ``minDuration`` / ``maxDuration`` against ``properties.duration``. A descriptor
field of the wrong type is ignored (the descriptor is an API answer), never trusted into a crash.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from airflow_kling.exceptions import ScenarioValidationError

if TYPE_CHECKING:
    from airflow_kling.models.spec import AssetLookup

ASSET_ID = re.compile(r"^asset_[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
"""What a file input's value must look like when it is not a data URL."""
FILE_TYPES = frozenset({"file", "file_array"})
MAX_DESCRIBED_INPUTS = 200
"""Inputs of one descriptor read at most (a descriptor is an API answer: its size is not ours to trust)."""


def descriptor_inputs(descriptor: Any) -> list[dict[str, Any]]:
    """The well-formed entries of a descriptor's ``inputs``, at most :data:`MAX_DESCRIBED_INPUTS`.

    A well-formed entry is a dict with a string ``name``; anything else yields an empty list.
    """
    entries = descriptor.get("inputs") if isinstance(descriptor, Mapping) else None
    if not isinstance(entries, list):
        return []
    return [
        dict(entry)
        for entry in entries[:MAX_DESCRIBED_INPUTS]
        if isinstance(entry, Mapping) and isinstance(entry.get("name"), str)
    ]


def input_problems(
    described: Iterable[Mapping[str, Any]],
    inputs: Mapping[str, Any],
    assets: AssetLookup | None = None,
    *,
    complete: bool = True,
) -> list[str]:
    """Every way ``inputs`` break the described inputs, each naming the input and its limit.

    :param described: the descriptor's inputs (see :func:`descriptor_inputs`).
    :param assets: asset id -> asset (``kind``, ``properties``) for the file checks; ``None``: the
        assets are not looked at (their ids' shape still is).
    :param complete: ``inputs`` are all the inputs (default); ``False``: some are not known yet (templates
        a DAG renders at run time), so a missing input is no problem.
    """
    entries = {str(entry["name"]): entry for entry in described}
    if not entries:
        return []
    problems: list[str] = []
    unknown = sorted(name for name in inputs if name not in entries)
    if unknown:
        problems.append(
            f"{', '.join(map(repr, unknown))}: no such input of this model (its inputs: "
            f"{', '.join(sorted(entries))})"
        )
    given = {name for name, value in inputs.items() if _given(value)}
    for name, entry in entries.items():
        if name not in given:
            if complete:
                problems.extend(_required_problems(name, entry, given))
            continue
        problems.extend(_value_problems(name, entry, inputs[name], assets))
    return problems


def check_inputs(
    described: Iterable[Mapping[str, Any]],
    inputs: Mapping[str, Any],
    assets: AssetLookup | None = None,
    *,
    source: str,
    complete: bool = True,
) -> None:
    """:func:`input_problems`, raised.

    :param source: where the limits come from, named in the error (``"the live schema of model_x"``).
    :raises ScenarioValidationError: listing every problem, before anything is paid.
    """
    problems = input_problems(described, inputs, assets, complete=complete)
    if problems:
        raise ScenarioValidationError(f"Inputs refused by {source}: " + "; ".join(problems))


def _given(value: Any) -> bool:
    return value is not None and value != "" and value != []


def _required_problems(name: str, entry: Mapping[str, Any], given: set[str]) -> list[str]:
    required = entry.get("required")
    if required is True or (isinstance(required, Mapping) and required.get("always") is True):
        return [f"{name} is required"]
    if not isinstance(required, Mapping):
        return []
    problems = []
    if_defined = required.get("ifDefined")
    if isinstance(if_defined, Mapping):
        for other in if_defined:
            if other in given:
                problems.append(f"{name} is required when {other} is given")
    if_not_defined = required.get("ifNotDefined")
    if isinstance(if_not_defined, Mapping):
        others = [str(other) for other in if_not_defined]
        if others and not any(other in given for other in others):
            problems.append(f"{name} is required when {' and '.join(others)} is not given")
    return problems


def finite_number(value: Any) -> float | None:
    """A number a descriptor or an API answer holds, as a finite float; ``None`` for anything else.

    Text, a boolean, ``NaN``, an infinity (Python's ``json`` reads both) and an integer too large for a float are
    not numbers here.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _value_problems(name: str, entry: Mapping[str, Any], value: Any, assets: AssetLookup | None) -> list[str]:
    kind = entry.get("type")
    if isinstance(kind, str) and kind.endswith("_array"):
        if not isinstance(value, list | tuple):
            return [f"{name} must be a list, got {type(value).__name__}"]
        problems = _length_problems(name, entry, len(value), "items")
        item_type = kind.removesuffix("_array")
        for index, item in enumerate(value[: 1 + _int(entry.get("maxLength"), 1000)]):
            problems.extend(_scalar_problems(f"{name}[{index}]", item_type, entry, item, assets))
        return problems
    return _scalar_problems(name, kind, entry, value, assets)


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def _scalar_problems(
    name: str, kind: Any, entry: Mapping[str, Any], value: Any, assets: AssetLookup | None
) -> list[str]:
    problems: list[str] = []
    allowed = entry.get("allowedValues")
    if isinstance(allowed, list) and allowed and value not in allowed:
        shown = ", ".join(repr(item) for item in allowed[:20]) + (", ..." if len(allowed) > 20 else "")
        return [f"{name} must be one of {shown}, got {_shown(value)}"]
    if kind == "number":
        number = finite_number(value)
        if number is None:
            return [f"{name} must be a number, got {_shown(value)}"]
        problems.extend(_range_problems(name, entry, number))
    elif kind == "boolean":
        if not isinstance(value, bool):
            return [f"{name} must be true or false, got {_shown(value)}"]
    elif kind == "string":
        if not isinstance(value, str):
            return [f"{name} must be a string, got {type(value).__name__}"]
        problems.extend(_length_problems(name, entry, len(value), "characters"))
    elif kind == "file":
        problems.extend(_file_problems(name, entry, value, assets))
    return problems


def _range_problems(name: str, entry: Mapping[str, Any], number: float) -> list[str]:
    low, high, step = (
        finite_number(entry.get("min")),
        finite_number(entry.get("max")),
        finite_number(entry.get("step")),
    )
    if low is not None and number < low:
        return [f"{name} must be at least {low:g}, got {number:g}"]
    if high is not None and number > high:
        return [f"{name} must be at most {high:g}, got {number:g}"]
    if step is not None and step > 0:
        steps = (number - (low or 0.0)) / step
        if abs(steps - round(steps)) > 1e-6:
            return [f"{name} must be a multiple of {step:g} from {low or 0:g}, got {number:g}"]
    return []


def _length_problems(name: str, entry: Mapping[str, Any], length: int, unit: str) -> list[str]:
    low, high = finite_number(entry.get("minLength")), finite_number(entry.get("maxLength"))
    if low is not None and length < low:
        return [f"{name} must have at least {low:g} {unit}, got {length}"]
    if high is not None and length > high:
        return [f"{name} must have at most {high:g} {unit}, got {length}"]
    return []


def _file_problems(name: str, entry: Mapping[str, Any], value: Any, assets: AssetLookup | None) -> list[str]:
    if isinstance(value, str) and value.startswith("data:"):
        return []  # the API makes the asset from the data URL: nothing to look up here
    if not isinstance(value, str) or not ASSET_ID.match(value):
        return [
            f"{name} must be the id of an asset (asset_...), got {_shown(value)}: upload a file first "
            "(ScenarioUploadAssetOperator, or ScenarioHook.upload_asset)"
        ]
    if assets is None:
        return []
    asset = assets(value)
    if asset is None:
        return [f"{name}: no asset {value}"]
    problems = []
    kind = entry.get("kind")
    if isinstance(kind, str) and kind and "kind" in asset and asset.get("kind") != kind:
        problems.append(
            f"{name} must be an asset of kind {kind}, {value} is of kind {_shown(asset.get('kind'))}"
        )
    properties = asset.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    size, max_size = finite_number(properties.get("size")), finite_number(entry.get("maxSize"))
    if size is not None and max_size is not None and size > max_size:
        problems.append(f"{name} must be at most {max_size:g} bytes, {value} is {size:g} bytes")
    duration = finite_number(properties.get("duration"))
    low, high = finite_number(entry.get("minDuration")), finite_number(entry.get("maxDuration"))
    if duration is not None and low is not None and duration < low:
        problems.append(f"{name} must last at least {low:g} s, {value} lasts {duration:.2f} s")
    if duration is not None and high is not None and duration > high:
        problems.append(f"{name} must last at most {high:g} s, {value} lasts {duration:.2f} s")
    return problems


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
