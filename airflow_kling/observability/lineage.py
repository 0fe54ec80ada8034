"""OpenLineage for the provider's operators.

One connected graph per clip, from the raw files to the archived video, through the Scenario assets in
between.

Datasets are named by OpenLineage's conventions: a local file as namespace ``file://<host>`` and its absolute
path, an object-store key as ``<scheme>://<bucket>`` and the key, and a Scenario asset as namespace
``scenario://<api host>/<project>`` (``default`` for the key's own project) and the asset id. No signed URL,
query string or credential ever goes into a name or a facet.

OpenLineage is optional: this module is imported only inside the operators' ``get_openlineage_facets_*``
methods, which Airflow's OpenLineage provider calls when it is installed; the facet classes come from
``airflow.providers.common.compat`` as the official providers take them.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from airflow_kling.hooks.connection import ScenarioConnectionConfig

SCENARIO_SCHEME = "scenario"
FACET_SCHEMA = "https://pypi.org/project/airflow-provider-kling/#scenariojobrunfacet"


@dataclass(frozen=True)
class DatasetRef:
    """One dataset: OpenLineage namespace and name, and its dataset facets by key."""

    namespace: str
    name: str
    facets: Mapping[str, Any] = field(default_factory=dict)
    output_facets: Mapping[str, Any] = field(default_factory=dict)


def file_dataset(uri: str) -> DatasetRef:
    """A local path or an object-storage URI as a dataset (``file://<host>`` + path, ``s3://<bucket>`` + key)."""
    parsed = urlsplit(uri if "://" in uri else f"file://{os.path.abspath(uri)}")
    if parsed.scheme in ("file", "local"):
        return DatasetRef(f"file://{socket.gethostname()}", parsed.path)
    bucket = parsed.netloc.rsplit("@", 1)[-1]  # without an Airflow connection id written before the bucket
    return DatasetRef(f"{parsed.scheme}://{bucket}", parsed.path.lstrip("/"))


def scenario_namespace(config: ScenarioConnectionConfig) -> str:
    """``scenario://<api host>/<project>``: where Scenario asset ids are unique."""
    return f"{SCENARIO_SCHEME}://{urlsplit(config.base_url).netloc}/{config.project_id or 'default'}"


def asset_datasets(config: ScenarioConnectionConfig, asset_ids: Iterable[Any]) -> list[DatasetRef]:
    """Scenario assets as datasets; values that are not asset ids (URLs, empty) are left out."""
    namespace = scenario_namespace(config)
    return [
        DatasetRef(namespace, value)
        for value in asset_ids
        if isinstance(value, str) and value.startswith("asset_")
    ]


def operator_lineage(
    inputs: Iterable[DatasetRef] = (),
    outputs: Iterable[DatasetRef] = (),
    run_facets: Mapping[str, Any] | None = None,
) -> Any:
    """An ``OperatorLineage`` for Airflow's OpenLineage provider."""
    from airflow.providers.common.compat.openlineage.facet import Dataset, OutputDataset
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(
        inputs=[Dataset(namespace=ref.namespace, name=ref.name, facets=dict(ref.facets)) for ref in inputs],
        outputs=[
            OutputDataset(
                namespace=ref.namespace,
                name=ref.name,
                facets=dict(ref.facets),
                outputFacets=dict(ref.output_facets),
            )
            for ref in outputs
        ],
        run_facets=dict(run_facets or {}),
    )


def archived_file_dataset(uri: str, sha256: str, size: int) -> DatasetRef:
    """An archived file as an output dataset: versioned by its SHA-256, with its size in bytes."""
    from airflow.providers.common.compat.openlineage.facet import OutputStatisticsOutputDatasetFacet
    from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet

    place = file_dataset(uri)
    return DatasetRef(
        place.namespace,
        place.name,
        {"version": DatasetVersionDatasetFacet(datasetVersion=sha256)},
        {"outputStatistics": OutputStatisticsOutputDatasetFacet(rowCount=None, size=size)},
    )


def job_run_facets(
    config: ScenarioConnectionConfig,
    job_id: str | None,
    model_id: str,
    inputs: Mapping[str, Any],
    *,
    status: str | None = None,
    cost: float | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """Run facets of a Scenario job.

    Its id as the external query id, what made it (the model and its inputs as the model's spec summarises
    them: never a long text), its cost, and its error when it failed.
    """
    from airflow.providers.common.compat.openlineage.facet import ErrorMessageRunFacet, ExternalQueryRunFacet

    from airflow_kling.models import model_spec

    facets: dict[str, Any] = {}
    if job_id:
        facets["externalQuery"] = ExternalQueryRunFacet(
            externalQueryId=job_id, source=scenario_namespace(config)
        )
    facets["scenario_job"] = _scenario_job_facet_class()(
        jobId=job_id,
        modelId=model_id,
        status=status,
        inputs=model_spec(model_id).lineage_fields(inputs),
        creativeUnitsCost=cost,
    )
    if error:
        facets["errorMessage"] = ErrorMessageRunFacet(message=error, programmingLanguage="python")
    return facets


@functools.cache
def _scenario_job_facet_class() -> type:
    import attrs
    from airflow.providers.common.compat.openlineage.facet import RunFacet

    @attrs.define
    class ScenarioJobRunFacet(RunFacet):
        """The Scenario job of a run.

        ``jobId``, ``modelId``, ``status``, ``inputs`` (what the model's spec says of them, e.g. Kling
        Lipsync's voice or audio asset and text length) and ``creativeUnitsCost``.
        """

        jobId: str | None = attrs.field(default=None)
        modelId: str | None = attrs.field(default=None)
        status: str | None = attrs.field(default=None)
        inputs: dict[str, Any] = attrs.field(factory=dict)
        creativeUnitsCost: float | None = attrs.field(default=None)

        @staticmethod
        def _get_schema() -> str:
            return FACET_SCHEMA

    return ScenarioJobRunFacet
