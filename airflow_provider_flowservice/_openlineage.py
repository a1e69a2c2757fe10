"""OpenLineage facets for a flow run (imported only when the OpenLineage provider asks for them).

Inputs: the flow's source, named per the OpenLineage naming spec where it has a scheme for the
store (``s3://<bucket>``, ``gs://<bucket>``), else ``aep-source://<base connection id>``
(:func:`airflow_provider_flowservice._lineage.source_dataset_name`). Output: the target dataset,
``aep://<org>`` / ``<sandbox>/datasets/<id>`` (the same dataset as the ``aep://`` asset), with
output statistics from the run's metrics. Run facet ``flowServiceRun``: flow id, run id, window,
status; job facet ``flowServiceFlow``: flow id, name, source kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.openlineage.facet import (
    Dataset,
    DatasetFacet,
    OutputDataset,
    OutputStatisticsOutputDatasetFacet,
    RunFacet,
)
from airflow.providers.openlineage.extractors import OperatorLineage
from attr import define
from openlineage.client.generated.base import JobFacet

from airflow_provider_flowservice._lineage import event_extra, source_dataset_name
from airflow_provider_flowservice.assets import SCHEME, org_host

if TYPE_CHECKING:
    from airflow_provider_flowservice._lineage import FlowLineage

_SCHEMA = "https://github.com/airflow-provider-flowservice/blob/main/docs/lineage.md"


@define
class FlowServiceRunFacet(RunFacet):
    """The flow run behind this task run."""

    flowId: str | None
    runId: str | None
    status: str | None
    windowStart: int | None
    windowEnd: int | None
    windowStartIso: str | None
    windowEndIso: str | None

    @staticmethod
    def _get_schema() -> str:
        return f"{_SCHEMA}#flowservicerun"


@define
class FlowServiceFlowFacet(JobFacet):
    """The dataflow this task runs."""

    flowId: str | None
    name: str | None
    sourceKind: str | None

    @staticmethod
    def _get_schema() -> str:
        return f"{_SCHEMA}#flowserviceflow"


@define
class FlowServiceSourceFacet(DatasetFacet):
    """Where Flow Service reads the source (its connection spec and source connection)."""

    sourceKind: str | None
    sourceConnectionId: str | None
    baseConnectionId: str | None

    @staticmethod
    def _get_schema() -> str:
        return f"{_SCHEMA}#flowservicesource"


def _count(mapping: Mapping[str, Any] | None, key: str) -> int | None:
    value = (mapping or {}).get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def operator_lineage(
    lineage: FlowLineage | None,
    summary: Mapping[str, Any] | None,
    *,
    flow_id: str | None,
    run_id: str | None,
    failed: bool,
) -> OperatorLineage[Any, Any]:
    """Inputs, outputs and facets for the task; what is unknown is left out, never guessed."""
    summary = summary or {}
    extra = event_extra(summary, lineage.dataset_id if lineage else None)
    run_facets: dict[str, Any] = {
        "flowServiceRun": FlowServiceRunFacet(
            flowId=extra["flow_id"] or flow_id,
            runId=extra["run_id"] or run_id,
            status=extra["status"] or ("failed" if failed else None),
            windowStart=extra["window_start"],
            windowEnd=extra["window_end"],
            windowStartIso=extra["window_start_iso"],
            windowEndIso=extra["window_end_iso"],
        )
    }
    if lineage is None:
        return OperatorLineage(run_facets=run_facets)
    job_facets = {
        "flowServiceFlow": FlowServiceFlowFacet(
            flowId=lineage.flow.id, name=lineage.flow.name, sourceKind=lineage.source_kind
        )
    }
    inputs = []
    if lineage.source is not None:
        namespace, name = source_dataset_name(lineage)
        inputs.append(
            Dataset(
                namespace=namespace,
                name=name,
                facets={
                    "flowServiceSource": FlowServiceSourceFacet(
                        sourceKind=lineage.source_kind,
                        sourceConnectionId=lineage.source.id,
                        baseConnectionId=lineage.source.base_connection_id,
                    )
                },
            )
        )
    outputs = []
    if lineage.dataset_id:
        stats = None
        rows = _count(summary.get("records"), "outputRecordCount")
        if rows is not None and not failed:
            stats = OutputStatisticsOutputDatasetFacet(
                rowCount=rows,
                size=_count(summary.get("bytes"), "outputBytes"),
                fileCount=_count(summary.get("files"), "outputFileCount"),
            )
        outputs.append(
            OutputDataset(
                namespace=f"{SCHEME}://{org_host(lineage.org_id)}",
                name=f"{lineage.sandbox_name.lower()}/datasets/{lineage.dataset_id}",
                outputFacets={"outputStatistics": stats} if stats else {},
            )
        )
    return OperatorLineage(inputs=inputs, outputs=outputs, run_facets=run_facets, job_facets=job_facets)
