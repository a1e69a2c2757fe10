"""Typed views of the Flow Service JSON this provider reads.

Parsing is lenient: the documentation shows several shapes for the same resource, and a field
missing from a response becomes ``None`` rather than an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from airflow_provider_flowservice.status import FlowRunStatus

#: Anything above this (year ~5138) is taken for unix *milliseconds*, not seconds.
MILLISECONDS_THRESHOLD = 100_000_000_000


@dataclass(frozen=True)
class RunError:
    """One error reported by a run (``code`` like ``CONNECTOR-2001-500``)."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.code else self.message


class CreatedRun(NamedTuple):
    """The answer to a create request: the run id, its etag, and whether an existing run was adopted.

    A NamedTuple rather than a dataclass: it is as immutable, and cheaper to define, which every
    DAG file importing the provider pays for.
    """

    run_id: str
    etag: str | None = None
    adopted: bool = False


def _as_int(value: Any) -> int | None:
    if type(value) is int:  # what json gives for the API's numbers: the common case, decided first
        return value
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        pass
    try:
        return int(float(value))  # "1651584991.0"
    except (TypeError, ValueError, OverflowError):
        return None


def _as_seconds(value: Any) -> int | None:
    """A window bound in unix seconds; values that can only be milliseconds are divided by 1000.

    The documentation sends seconds, but the OpenAPI once calls these fields milliseconds: a run
    that echoes them in milliseconds must still match its window.
    """
    number = _as_int(value)
    if number is not None and number >= MILLISECONDS_THRESHOLD:
        return number // 1000
    return number


def _mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty one (the API's shapes vary)."""
    if type(value) is dict:  # what json gives: skips the ABC check, a poll makes a dozen of these
        return value
    return value if isinstance(value, Mapping) else _EMPTY


_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _text(value: Any) -> str | None:
    """A string field as a string (or None): a number or object where text belongs is shown as text."""
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _errors(raw: Any) -> list[RunError]:
    if not raw or not isinstance(raw, list):  # nearly every poll: an empty list
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
        metrics = _mapping(item.get("metrics"))
        status_summary = _mapping(metrics.get("statusSummary"))
        duration = _mapping(metrics.get("durationSummary"))
        raw_status = status_summary.get("status")
        errors = _errors(status_summary.get("errors"))
        params = _mapping(item.get("params"))
        window_start = _as_seconds(params.get("windowStartTime"))
        window_end = _as_seconds(params.get("windowEndTime"))
        activities = item.get("activities")
        for activity in activities if isinstance(activities, list) else []:
            if type(activity) is not dict and not isinstance(activity, Mapping):
                continue
            summary = _mapping(activity.get("statusSummary"))
            errors += _errors(summary.get("errors"))
            errors += _errors(_mapping(summary.get("extensions")).get("errors"))
            ext = _mapping(_mapping(activity.get("durationSummary")).get("extensions"))
            start_ms, end_ms = _as_int(ext.get("windowStart")), _as_int(ext.get("windowEnd"))
            if window_start is None and start_ms is not None:
                window_start = start_ms // 1000
            if window_end is None and end_ms is not None:
                window_end = end_ms // 1000
        unique = tuple(dict.fromkeys(errors))
        completed_at = _as_int(duration.get("completedAtUTC"))
        return cls(
            id=str(item.get("id")),
            flow_id=_text(item.get("flowId")),
            # A run that reports completion has ended, whatever its status says.
            status=FlowRunStatus.parse(raw_status, completed=completed_at is not None and completed_at > 0),
            raw_status=_text(raw_status),
            errors=unique,
            window_start=window_start,
            window_end=window_end,
            created_at=_as_int(item.get("createdAt")),
            started_at=_as_int(duration.get("startedAtUTC")),
            completed_at=completed_at,
            record_summary=dict(_mapping(metrics.get("recordSummary"))),
            file_summary=dict(_mapping(metrics.get("fileSummary"))),
            size_summary=dict(_mapping(metrics.get("sizeSummary"))),
            etag=_text(item.get("etag")),
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
            "bytes": {k: self.size_summary.get(k) for k in ("inputBytes", "outputBytes")
                      if k in self.size_summary},
            "duration_seconds": self.duration_seconds,
            "completed_at": self.completed_at,
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
    source_connection_ids: tuple[str, ...] = ()
    target_connection_ids: tuple[str, ...] = ()

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> Flow:
        """Build from one flow object (an element of ``items``)."""
        delta = None
        transformations = item.get("transformations")
        for transformation in transformations if isinstance(transformations, list) else []:
            column = _mapping(_mapping(transformation).get("params")).get("deltaColumn")
            if isinstance(column, Mapping) and column.get("name"):
                delta = str(column["name"])
        return cls(
            id=str(item.get("id")),
            name=_text(item.get("name")),
            state=_text(item.get("state")),
            flow_spec_id=_text(_mapping(item.get("flowSpec")).get("id")),
            delta_column=delta,
            schedule_frequency=_text(_mapping(item.get("scheduleParams")).get("frequency")),
            etag=_text(item.get("etag")),
            source_connection_ids=_ids(item.get("sourceConnectionIds")),
            target_connection_ids=_ids(item.get("targetConnectionIds")),
        )


def _ids(raw: Any) -> tuple[str, ...]:
    """A list of ids as strings (anything else: none)."""
    return tuple(str(i) for i in raw if isinstance(i, str | int) and str(i)) if isinstance(raw, list) else ()


@dataclass(frozen=True)
class FlowConnection:
    """A source or target connection (``GET /sourceConnections/{id}``, ``/targetConnections/{id}``).

    ``params`` is what the connection reads or writes: a cloud-storage ``path``, a ``tableName``,
    or (for a target in Experience Platform) the ``dataSetId``.
    """

    id: str
    name: str | None
    base_connection_id: str | None
    connection_spec_id: str | None
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dataset_id(self) -> str | None:
        """The dataset a target connection writes to (``params.dataSetId``)."""
        return _text(self.params.get("dataSetId")) or None

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> FlowConnection:
        return cls(
            id=str(item.get("id")),
            name=_text(item.get("name")),
            base_connection_id=_text(item.get("baseConnectionId")),
            connection_spec_id=_text(_mapping(item.get("connectionSpec")).get("id")),
            params=dict(_mapping(item.get("params"))),
        )


@dataclass(frozen=True)
class ConnectionSpec:
    """A connection spec (``GET /connectionSpecs/{id}``): ``name`` is the source kind (``amazon-s3``)."""

    id: str
    name: str | None

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> ConnectionSpec:
        return cls(id=str(item.get("id")), name=_text(item.get("name")))


__all__ = ["ConnectionSpec", "CreatedRun", "Flow", "FlowConnection", "FlowRun", "RunError"]
