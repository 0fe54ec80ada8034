"""The models the provider knows: one :class:`~airflow_kling.models.spec.ModelSpec` per file.

:func:`model_spec` finds a model's spec among the provider's own (Kling Lipsync), those that installed
packages declare under the entry-point group ``airflow_kling.models``, and those named in ``[kling]
model_specs`` (``AIRFLOW__KLING__MODEL_SPECS``: comma-separated ``module:attribute`` paths); a model
none of them names gets :func:`~airflow_kling.models.spec.generic_spec`. Loading a spec imports no heavy
module.
"""

from __future__ import annotations

import functools
import importlib
import os
from importlib.metadata import entry_points

from airflow_kling.exceptions import ScenarioConfigError
from airflow_kling.models.spec import ModelInput, ModelSpec, generic_spec

__all__ = ["ModelInput", "ModelSpec", "generic_spec", "known_specs", "model_spec"]

BUILT_IN = ("airflow_kling.models.kling_lipsync:KLING_LIPSYNC",)
ENTRY_POINT_GROUP = "airflow_kling.models"
SETTING = "AIRFLOW__KLING__MODEL_SPECS"
_loaded: dict[str, ModelSpec] = {}


def _load(path: str) -> ModelSpec:
    module_name, _, attribute = path.strip().partition(":")
    try:
        spec = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise ScenarioConfigError(f"Model spec {path!r} cannot be loaded: {error}") from None
    if not isinstance(spec, ModelSpec):
        raise ScenarioConfigError(f"Model spec {path!r} is a {type(spec).__name__}, not a ModelSpec")
    return spec


def _configured() -> list[str]:
    from airflow_kling.version_compat import conf

    setting = os.environ.get(SETTING)
    if setting is None:
        setting = str(conf.get("kling", "model_specs", fallback="") or "")
    return [item for item in setting.split(",") if item.strip()]


@functools.cache
def _entry_point_paths() -> tuple[str, ...]:
    """The specs installed packages declare.

    Read once per process (scanning every distribution's metadata costs milliseconds, and specs are looked up
    on DAG parse, on every submission and in every preview card).
    """
    return tuple(point.value for point in entry_points(group=ENTRY_POINT_GROUP))


def known_specs() -> dict[str, ModelSpec]:
    """Every model spec the provider can find, by model id (built in, entry points, ``[kling] model_specs``).

    :raises ScenarioConfigError: a named spec cannot be imported, or is not a :class:`ModelSpec`.
    """
    paths = [*BUILT_IN, *_entry_point_paths(), *_configured()]
    for path in paths:
        if path not in _loaded:
            _loaded[path] = _load(path)
    specs: dict[str, ModelSpec] = {}
    for path in paths:
        spec = _loaded[path]
        specs.setdefault(spec.model_id, spec)
    return specs


def model_spec(model_id: str) -> ModelSpec:
    """The spec of ``model_id``, or a generic one (no local checks) for a model no spec names."""
    return known_specs().get(model_id) or generic_spec(model_id)
