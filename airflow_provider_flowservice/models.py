"""Typed views of the Flow Service JSON this provider reads.

Parsing is lenient: the documentation shows several shapes for the same resource, and a field
missing from a response becomes ``None`` rather than an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_flowservice.status import FlowRunStatus


@dataclass(frozen=True)
class RunError:
    """One error reported by a run (``code`` like ``CONNECTOR-2001-500``)."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.code else self.message


@dataclass(frozen=True)
class CreatedRun:
    """The answer to a create request: the run id, its etag, and whether an existing run was adopted."""

    run_id: str
    etag: str | None = None
    adopted: bool = False


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _errors(raw: Any) -> list[RunError]:
    if not isinstance(raw, list):
        return []
    out = []
    for item in raw:
        if isinstance(item, Mapping):
            out.append(RunError(code=str(item.get("code") or ""), message=str(item.get("message") or "")))
    return out


@dataclass(frozen=True)
class FlowRun:
    """A flow run as ``GET /runs/{id}`` describes it. Times are unix milliseconds as the API gives them."""

    id: str
    flow_id: str | None
    status: FlowRunStatus
    raw_status: str | None
    errors: tuple[RunError, ...] = ()
    window_start: int | None = None
    """Window start in unix seconds (from ``params`` or the activities' window, whichever is present)."""
    window_end: int | None = None
    created_at: int | None = None
    started_at: int | None = None
    completed_at: int | None = None
    record_summary: Mapping[str, Any] = field(default_factory=dict)
    file_summary: Mapping[str, Any] = field(default_factory=dict)
    size_summary: Mapping[str, Any] = field(default_factory=dict)
    etag: str | None = None

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> FlowRun:
        """Build from one run object (an element of ``items``)."""
        metrics = item.get("metrics") or {}
        status_summary = metrics.get("statusSummary") or {}
        duration = metrics.get("durationSummary") or {}
        raw_status = status_summary.get("status")
        errors = _errors(status_summary.get("errors"))
        window_start = window_end = None
        params = item.get("params") or {}
        if isinstance(params, Mapping):
            window_start = _as_int(params.get("windowStartTime"))
            window_end = _as_int(params.get("windowEndTime"))
        for activity in item.get("activities") or []:
            if not isinstance(activity, Mapping):
                continue
            summary = activity.get("statusSummary") or {}
            errors += _errors(summary.get("errors"))
            errors += _errors((summary.get("extensions") or {}).get("errors"))
            ext = (activity.get("durationSummary") or {}).get("extensions") or {}
            if window_start is None and _as_int(ext.get("windowStart")) is not None:
                window_start = _as_int(ext["windowStart"]) // 1000  # type: ignore[operator]
            if window_end is None and _as_int(ext.get("windowEnd")) is not None:
                window_end = _as_int(ext["windowEnd"]) // 1000  # type: ignore[operator]
        unique = tuple(dict.fromkeys(errors))
        return cls(
            id=str(item.get("id")),
            flow_id=item.get("flowId"),
            status=FlowRunStatus.parse(raw_status),
            raw_status=raw_status,
            errors=unique,
            window_start=window_start,
            window_end=window_end,
            created_at=_as_int(item.get("createdAt")),
            started_at=_as_int(duration.get("startedAtUTC")),
            completed_at=_as_int(duration.get("completedAtUTC")),
            record_summary=dict(metrics.get("recordSummary") or {}),
            file_summary=dict(metrics.get("fileSummary") or {}),
            size_summary=dict(metrics.get("sizeSummary") or {}),
            etag=item.get("etag"),
        )

    @property
    def duration_seconds(self) -> float | None:
        """Run duration, when both ends are known."""
        if self.started_at is None or self.completed_at is None:
            return None
        return max(0.0, (self.completed_at - self.started_at) / 1000)

    def summary(self) -> dict[str, Any]:
        """A small JSON-safe dict for logs, trigger events and XCom."""
        return {
            "run_id": self.id,
            "flow_id": self.flow_id,
            "status": self.raw_status,
            "errors": [{"code": e.code, "message": e.message} for e in self.errors],
            "window_start": self.window_start,
            "window_end": self.window_end,
            "records": {k: self.record_summary.get(k) for k in
                        ("inputRecordCount", "outputRecordCount", "failedRecordCount")
                        if k in self.record_summary},
            "files": {k: self.file_summary.get(k) for k in
                      ("inputFileCount", "outputFileCount", "failedFileCount")
                      if k in self.file_summary},
            "duration_seconds": self.duration_seconds,
        }


@dataclass(frozen=True)
class Flow:
    """A dataflow as ``GET /flows/{id}`` describes it."""

    id: str
    name: str | None
    state: str | None
    flow_spec_id: str | None
    delta_column: str | None
    schedule_frequency: str | None
    etag: str | None = None

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> Flow:
        """Build from one flow object (an element of ``items``)."""
        delta = None
        for transformation in item.get("transformations") or []:
            params = (transformation or {}).get("params") or {}
            column = params.get("deltaColumn")
            if isinstance(column, Mapping) and column.get("name"):
                delta = str(column["name"])
        return cls(
            id=str(item.get("id")),
            name=item.get("name"),
            state=item.get("state"),
            flow_spec_id=(item.get("flowSpec") or {}).get("id"),
            delta_column=delta,
            schedule_frequency=(item.get("scheduleParams") or {}).get("frequency"),
            etag=item.get("etag"),
        )
