"""What one Scenario model means to the provider.

:class:`ModelSpec`, and its inputs as the API describes them (:class:`ModelInput`, the fields of ``GET
/models/{modelId}``'s ``model.inputs[]``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_kling.media.limits import AudioLimits, VideoLimits

AssetLookup = Callable[[str], Mapping[str, Any] | None]
"""Asset id -> the asset (at least ``kind`` and ``properties``), or ``None`` when there is no such asset."""
FileLookup = Callable[[str], Path | None]
"""Asset id -> the local file of the asset (in the emulator), or ``None``."""


@dataclass(frozen=True)
class ModelInput:
    """One input of a model, as ``GET /models/{modelId}`` describes it (section 2.3 of the wire contract).

    :param name: the key in the generation body.
    :param type: ``string``, ``number``, ``boolean``, ``file``, ``file_array``, ``string_array``, ...
    :param kind: for file inputs, the asset kind (``video``, ``audio``, ``image``, ...).
    :param required: ``True`` (always), or ``{"ifDefined": {name: message}}`` /
        ``{"ifNotDefined": {name: message}}`` as the API writes it; ``None``: optional.
    :param min_length: characters of a string (items of an array) at least; ``max_length`` at most.
    :param max_size: bytes of a file input's asset at most (``asset.properties.size``).
    :param min_duration: seconds of a file input's media at least; ``max_duration`` at most.
    """

    name: str
    type: str
    kind: str | None = None
    required: bool | Mapping[str, Any] | None = None
    default: Any = None
    allowed_values: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    max_size: int | None = None
    min_duration: float | None = None
    max_duration: float | None = None
    label: str | None = None
    description: str | None = None

    def descriptor(self) -> dict[str, Any]:
        """This input as the API serves it: camelCase keys, unset fields left out."""
        required: Any = {"always": True} if self.required is True else self.required
        fields = {
            "name": self.name,
            "type": self.type,
            "kind": self.kind,
            "required": dict(required) if isinstance(required, Mapping) else None,
            "default": self.default,
            "allowedValues": list(self.allowed_values) if self.allowed_values is not None else None,
            "min": self.min,
            "max": self.max,
            "step": self.step,
            "minLength": self.min_length,
            "maxLength": self.max_length,
            "maxSize": self.max_size,
            "minDuration": self.min_duration,
            "maxDuration": self.max_duration,
            "label": self.label,
            "description": self.description,
        }
        return {key: value for key, value in fields.items() if value is not None}


@dataclass(frozen=True)
class Output:
    """What a successful job of the model makes: the kind, MIME type and file extension of its assets."""

    kind: str = "image"
    mime_type: str = "image/png"
    extension: str = ".png"


def _no_check(inputs: Mapping[str, Any]) -> None:
    return None


def summary_of_inputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Every input by its wire name, strings over 64 characters as their length only.

    Prompts and texts are not sent to lineage. The default :attr:`ModelSpec.lineage_fields`.
    """
    return {
        name: (f"{len(value)} characters" if isinstance(value, str) and len(value) > 64 else value)
        for name, value in inputs.items()
        if isinstance(value, str | int | float | bool)
    }


def rows_of_inputs(inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
    """One ``(wire name, value)`` row per input: the default :attr:`ModelSpec.preview_rows`."""
    return [(str(name), str(value)) for name, value in inputs.items()]


def flat_cost(inputs: Mapping[str, Any], assets: AssetLookup) -> float:
    """10 creative units for any job: the default :attr:`ModelSpec.emulated_cost`."""
    return 10.0


@dataclass(frozen=True)
class ModelSpec:
    """Everything one Scenario model means to the provider, in one place (one file per model).

    The generic parts (operators, submit-once, waits, archive, lineage, metrics, preview, emulator) read the
    spec they are given; a model the provider has no spec for gets :func:`generic_spec`.

    :param model_id: the Scenario model id (``model_...``).
    :param title: how people name it (preview headings), e.g. ``"Kling Lipsync"``.
    :param inputs: its inputs and their limits, as ``GET /models/{modelId}`` describes them: checked
        before any paid call, and what the emulator serves.
    :param check_inputs: checks across inputs that a descriptor cannot say (raise
        :class:`~airflow_kling.exceptions.ScenarioValidationError` naming the input); default none.
    :param permanent_failures: regular expressions (searched case-insensitively in a failed job's
        ``metadata.error`` and ``hint``) for failures no retry with the same inputs can change.
    :param lineage_fields: inputs -> the fields of the OpenLineage run facet's ``inputs`` (never a
        credential; long texts by their length); default :func:`summary_of_inputs`.
    :param preview_rows: inputs -> ``(label, value)`` rows of the UI preview; default :func:`rows_of_inputs`.
    :param media: file input name -> the limits of its video or audio file (what
        :mod:`airflow_kling.media` checks and prepares files to); default none.
    :param output: the kind, MIME type and extension of what a job makes.
    :param archive_asset: the Airflow asset an archive of this model's outputs updates by default.
    :param emulated_cost: creative units the emulator bills for valid inputs; default 10.
    :param emulated_output: writes the emulator's output for valid inputs at a path (input files found
        through a :data:`FileLookup`); default a copy of the first file input.
    """

    model_id: str
    title: str
    inputs: tuple[ModelInput, ...] = ()
    check_inputs: Callable[[Mapping[str, Any]], None] = _no_check
    permanent_failures: tuple[str, ...] = ()
    lineage_fields: Callable[[Mapping[str, Any]], dict[str, Any]] = summary_of_inputs
    preview_rows: Callable[[Mapping[str, Any]], list[tuple[str, str]]] = rows_of_inputs
    media: Mapping[str, VideoLimits | AudioLimits] = field(default_factory=dict)
    output: Output = field(default_factory=Output)
    archive_asset: str = "scenario_outputs"
    emulated_cost: Callable[[Mapping[str, Any], AssetLookup], float] = flat_cost
    emulated_output: Callable[[Mapping[str, Any], FileLookup, Path], None] | None = None

    def descriptor(self) -> dict[str, Any]:
        """The model as ``GET /models/{modelId}`` answers it (``{"model": ...}``'s value)."""
        return {
            "id": self.model_id,
            "name": self.title,
            "type": "custom",
            "custom": True,
            "status": "trained",
            "privacy": "public",
            "inputs": [item.descriptor() for item in self.inputs],
        }

    @property
    def video_limits(self) -> VideoLimits | None:
        """The limits of the model's (first) video input, if it has one."""
        return next((limits for limits in self.media.values() if isinstance(limits, VideoLimits)), None)

    @property
    def audio_limits(self) -> AudioLimits | None:
        """The limits of the model's (first) audio input, if it has one."""
        return next((limits for limits in self.media.values() if isinstance(limits, AudioLimits)), None)

    def input(self, name: str) -> ModelInput | None:
        """The input called ``name``, if the spec names one."""
        return next((item for item in self.inputs if item.name == name), None)


def generic_spec(model_id: str) -> ModelSpec:
    """The spec of a model the provider knows nothing of.

    No local checks (its live descriptor still applies), every input shown and traced as it is.
    """
    return ModelSpec(model_id=model_id, title=model_id)
