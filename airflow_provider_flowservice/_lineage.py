"""What a flow run read and wrote, for Airflow Assets and OpenLineage (docs/lineage.md).

One :class:`LineageRecorder` per task: it remembers the finished run, reads the flow's source and
target at most once (``GET /flows``, ``/targetConnections``, and for OpenLineage
``/sourceConnections`` and ``/connectionSpecs``), and never lets a lineage failure fail the task:
the first one is logged as a warning and the rest of the task's lineage is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote

from airflow_provider_flowservice._outcome import as_summary
from airflow_provider_flowservice._window import iso_utc
from airflow_provider_flowservice.assets import SCHEME, dataset_uri, emit, org_host

if TYPE_CHECKING:
    from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook
    from airflow_provider_flowservice.models import Flow, FlowConnection, FlowRun

#: Fallback OpenLineage namespace for sources the naming spec has no scheme for (or whose
#: address Flow Service keeps only in the base connection's credentials):
#: ``aep-source://<base connection id>``.
FALLBACK_SCHEME = "aep-source"
#: Cloud-storage sources whose source connection ``path`` starts with the bucket (or container).
_BUCKET_SCHEMES = {"amazon-s3": "s3", "google-cloud-storage": "gs", "google-cloud": "gs"}


class FlowLineage(NamedTuple):
    """A flow's target dataset and (when read) its source, as Flow Service describes them."""

    flow: Flow
    org_id: str
    sandbox_name: str
    target: FlowConnection | None
    source: FlowConnection | None = None
    source_kind: str | None = None

    @property
    def dataset_id(self) -> str | None:
        return self.target.dataset_id if self.target is not None else None

    @property
    def dataset_uri(self) -> str | None:
        return dataset_uri(self.org_id, self.sandbox_name, self.dataset_id) if self.dataset_id else None


def read_lineage(
    hook: FlowServiceHook, flow_id: str, *, with_source: bool, known: FlowLineage | None = None
) -> FlowLineage:
    """Read the flow and its first target connection, and the source connection + spec when asked.

    ``known``: what an earlier call read (the flow and target): only the source is read then.
    """
    if known is None:
        flow = hook.get_flow(flow_id)
        tid = flow.target_connection_ids[0] if flow.target_connection_ids else None
        target = hook.get_target_connection(tid) if tid else None
        settings = hook.settings
        known = FlowLineage(flow, settings.org_id, settings.sandbox_name, target)
    if not with_source or known.source is not None or not known.flow.source_connection_ids:
        return known
    source = hook.get_source_connection(known.flow.source_connection_ids[0])
    kind = hook.get_connection_spec(source.connection_spec_id).name if source.connection_spec_id else None
    return known._replace(source=source, source_kind=kind)


def event_extra(summary: Mapping[str, Any], dataset_id: str | None) -> dict[str, Any]:
    """The asset event's extra: flow, run, window (unix seconds and ISO UTC), record counts, status."""
    records = summary.get("records") or {}
    start, end = summary.get("window_start"), summary.get("window_end")
    return {
        "flow_id": summary.get("flow_id"),
        "run_id": summary.get("run_id"),
        "status": summary.get("status"),
        "dataset_id": dataset_id,
        "window_start": start,
        "window_end": end,
        "window_start_iso": iso_utc(start) if isinstance(start, int) else None,
        "window_end_iso": iso_utc(end) if isinstance(end, int) else None,
        "records_read": records.get("inputRecordCount"),
        "records_written": records.get("outputRecordCount"),
        "records_failed": records.get("failedRecordCount"),
    }


def source_dataset_name(lineage: FlowLineage) -> tuple[str, str]:
    """(namespace, name) of the source per the OpenLineage naming spec, else the fallback.

    Cloud storage: ``s3://<bucket>`` / ``gs://<bucket>`` and the object path. Anything else
    (databases, warehouses, SaaS objects) uses ``aep-source://<base connection id>`` and the
    ``tableName`` (or the source connection id): their host or account lives in the base
    connection, next to its credentials, which this provider does not read.
    """
    source = lineage.source
    if source is None:
        return f"{FALLBACK_SCHEME}://unknown", lineage.flow.id
    params = source.params
    scheme = _BUCKET_SCHEMES.get(lineage.source_kind or "")
    path = params.get("path")
    if scheme and isinstance(path, str) and path.strip("/"):
        bucket, _, key = path.strip("/").partition("/")
        return f"{scheme}://{bucket}", key or "/"
    name = params.get("tableName") or params.get("path") or source.id
    return f"{FALLBACK_SCHEME}://{quote(source.base_connection_id or source.id, safe='')}", str(name)


class LineageRecorder:
    """Per-task lineage state: the finished run, the flow's lineage read once, one warning at most."""

    def __init__(self) -> None:
        self.summary: dict[str, Any] | None = None
        self.flow_id: str | None = None
        self._lineage: FlowLineage | None = None
        self._with_source = False
        self._failed = False

    def finished(self, run: FlowRun | Mapping[str, Any], flow_id: str | None = None) -> None:
        self.summary = as_summary(run)
        self.flow_id = flow_id or self.summary.get("flow_id")

    def lineage(self, hook: FlowServiceHook, log: Any, *, with_source: bool) -> FlowLineage | None:
        """The flow's lineage, read at most once per task (once more only to add the source)."""
        if self._failed or not self.flow_id:
            return None
        if self._lineage is not None and (self._with_source or not with_source):
            return self._lineage
        try:
            self._lineage = read_lineage(hook, self.flow_id, with_source=with_source, known=self._lineage)
            self._with_source = with_source
        except Exception as exc:  # lineage is a by-product: never fail the task for it
            self.failed(log, exc)
            return None
        return self._lineage

    def failed(self, log: Any, exc: BaseException) -> None:
        if not self._failed:
            log.warning(
                "Lineage for flow %s skipped (the task itself is unaffected): %s: %s",
                self.flow_id,
                type(exc).__name__,
                exc,
            )
        self._failed = True

    def emit_asset_event(
        self, context: Mapping[str, Any], outlets: Any, hook: FlowServiceHook, log: Any
    ) -> None:
        """Emit the target dataset's asset event through the task's outlets (never raises)."""
        if self.summary is None:
            return
        try:
            lineage = self.lineage(hook, log, with_source=False)
            if lineage is None:
                return
            uri = lineage.dataset_uri
            if uri is None:
                log.warning("Flow %s has no target dataset (params.dataSetId): no asset event.", self.flow_id)
                return
            extra = event_extra(self.summary, lineage.dataset_id)
            if emit(context, list(outlets or ()), uri, extra, log):
                log.info("Asset event for %s: %s", uri, extra)
        except Exception as exc:
            self.failed(log, exc)

    def openlineage(
        self, hook: FlowServiceHook, log: Any, *, flow_id: Any, run_id: str | None, failed: bool
    ) -> Any:
        """OperatorLineage for the finished (or failed) task; empty when nothing can be said."""
        from airflow_provider_flowservice._openlineage import operator_lineage

        if self.flow_id is None and isinstance(flow_id, str) and flow_id.strip() and "{{" not in flow_id:
            self.flow_id = flow_id.strip()
        try:
            lineage = self.lineage(hook, log, with_source=True)
            return operator_lineage(lineage, self.summary, flow_id=self.flow_id, run_id=run_id, failed=failed)
        except Exception as exc:
            self.failed(log, exc)
            from airflow.providers.openlineage.extractors import OperatorLineage

            return OperatorLineage()


__all__ = ["FALLBACK_SCHEME", "SCHEME", "FlowLineage", "LineageRecorder", "event_extra", "org_host"]
