"""Turn what a user passes (or what a template renders) into the values Flow Service is sent.

Flow Service takes the run window as unix seconds. Users write datetimes, ISO-8601 strings or
numbers, often through templates, so every value is checked here, before any request is sent,
and every error names the argument, the value and the fix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from airflow_provider_flowservice.exceptions import FlowServiceConfigError
from airflow_provider_flowservice.models import MILLISECONDS_THRESHOLD

#: Latest accepted instant (2200-01-01T00:00:00Z): later values are typing mistakes.
MAX_SECONDS = 7_258_118_400

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_NULLISH = {"", "none", "null", "nan"}

FIX_DATA_INTERVAL = (
    'use a data-interval timetable, e.g. schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC") '
    "(from airflow.sdk import CronDataIntervalTimetable on Airflow 3, or from airflow.timetables.interval "
    "on Airflow 2), or pass window_start and "
    'window_end explicitly, e.g. window_start="{{ params.window_start }}", '
    'window_end="{{ params.window_end }}" with the values given as trigger params'
)


class Window(NamedTuple):
    """A run window in unix seconds, start inclusive, end exclusive (as Flow Service reads it).

    A NamedTuple, not a dataclass, to keep the provider's import (paid by every DAG parse) cheap.
    """

    start: int
    end: int

    def describe(self) -> str:
        """One line for logs: both ends in UTC ISO-8601 and in unix seconds."""
        return (
            f"{iso_utc(self.start)} -> {iso_utc(self.end)} "
            f"(unix seconds {self.start} -> {self.end}, {self.end - self.start} s)"
        )


def iso_utc(seconds: int | float) -> str:
    """Unix seconds as an ISO-8601 UTC string (``2024-01-01T00:00:00+00:00``)."""
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat()


def _describe_value(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return repr(value)


def _check_range(seconds: float, name: str, value: Any) -> int:
    if not math.isfinite(seconds):
        raise FlowServiceConfigError(f"{name} {value!r} is not a finite number; pass unix seconds.")
    if seconds >= MILLISECONDS_THRESHOLD:
        raise FlowServiceConfigError(
            f"{name} {_describe_value(value)} looks like unix milliseconds; Flow Service takes unix "
            f"seconds: divide by 1000 (e.g. {int(seconds) // 1000})."
        )
    if seconds < 0:
        raise FlowServiceConfigError(
            f"{name} {_describe_value(value)} is before 1970-01-01T00:00:00+00:00; pass a time as unix "
            "seconds (e.g. 1704067200), an aware datetime or an ISO-8601 string with offset."
        )
    if seconds > MAX_SECONDS:
        raise FlowServiceConfigError(
            f"{name} {_describe_value(value)} is after 2200-01-01T00:00:00+00:00 "
            f"({iso_utc(seconds) if seconds < 253402300800 else 'beyond year 9999'}); check the value: "
            "Flow Service takes unix seconds (10 digits today, e.g. 1704067200)."
        )
    return math.floor(seconds)


def _from_datetime(value: datetime, name: str) -> int:
    if value.tzinfo is None or value.utcoffset() is None:
        raise FlowServiceConfigError(
            f"{name} {value.isoformat()!r} is a naive datetime (no time zone); make it aware, e.g. "
            f"datetime(..., tzinfo=timezone.utc) or pendulum.datetime(..., tz='UTC')."
        )
    return _check_range(value.timestamp(), name, value)


def _from_string(value: str, name: str) -> int:
    text = value.strip()
    if text.lower() in _NULLISH:
        raise FlowServiceConfigError(
            f"{name} is {value!r}, which is not a time. If it comes from a template, the template "
            "rendered an empty or missing value (a param or XCom that is not set); pass unix seconds, "
            "an aware datetime or an ISO-8601 string with offset, e.g. '2024-01-01T00:00:00+00:00'."
        )
    if "{{" in text or "{%" in text:
        raise FlowServiceConfigError(
            f"{name} {value!r} is an unrendered Jinja template. Templates are rendered only in the "
            "operator's templated fields (flow_id, window_start, window_end, delta_column, start_time) "
            "and only when passed directly as a string; pass the template as the argument itself."
        )
    if _NUMBER.match(text):
        return _check_range(float(text), name, value)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise FlowServiceConfigError(
            f"{name} {value!r} is neither unix seconds nor an ISO-8601 date-time; pass e.g. "
            "'2024-01-01T00:00:00+00:00' or 1704067200."
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise FlowServiceConfigError(
            f"{name} {value!r} has no UTC offset; add one, e.g. '{parsed.isoformat()}+00:00'."
        )
    return _check_range(parsed.timestamp(), name, value)


def to_unix_seconds(value: Any, name: str) -> int:
    """Convert a datetime, ISO-8601 string with offset, or unix seconds (number or numeric string).

    :param value: the user's value (already template-rendered).
    :param name: the argument name, used in error messages.
    :raises FlowServiceConfigError: with the value and the fix, for anything ambiguous or wrong.
    """
    if isinstance(value, datetime):
        return _from_datetime(value, name)
    if isinstance(value, bool):
        raise FlowServiceConfigError(f"{name} {value!r} is a boolean, not a time; pass unix seconds.")
    if isinstance(value, int | float):
        return _check_range(float(value), name, value)
    if isinstance(value, str):
        return _from_string(value, name)
    raise FlowServiceConfigError(
        f"{name} {value!r} (type {type(value).__name__}) is not a time; pass an aware datetime, an "
        "ISO-8601 string with offset such as '2024-01-01T00:00:00+00:00', or unix seconds."
    )


def resolve_window(
    window_start: Any = None,
    window_end: Any = None,
    *,
    data_interval_start: datetime | None = None,
    data_interval_end: datetime | None = None,
) -> Window:
    """Pick the explicit window, else the data interval, and check start < end.

    :param window_start: explicit start (None -> ``data_interval_start``).
    :param window_end: explicit end (None -> ``data_interval_end``).
    :raises FlowServiceConfigError: missing, empty or inverted window, with the fix.
    """
    start_value, start_name = (window_start, "window_start")
    end_value, end_name = (window_end, "window_end")
    if window_start is None:
        start_value, start_name = data_interval_start, "data_interval_start"
    if window_end is None:
        end_value, end_name = data_interval_end, "data_interval_end"

    if start_value is None or end_value is None:
        missing = [n for n, v in ((start_name, start_value), (end_name, end_value)) if v is None]
        raise FlowServiceConfigError(
            f"No run window: window_start/window_end were not given and the task has no "
            f"{' / '.join(missing)} (a manual run without a logical date has no data interval on "
            f"Airflow 3). Fix: {FIX_DATA_INTERVAL}."
        )
    start = to_unix_seconds(start_value, start_name)
    end = to_unix_seconds(end_value, end_name)
    if start == end and window_start is None and window_end is None:
        raise FlowServiceConfigError(
            f"The task's data interval is empty: data_interval_start == data_interval_end == "
            f"{iso_utc(start)} (unix {start}). On Airflow 3 the default timetable for cron schedules "
            "(CronTriggerTimetable) and manual or dag.test() runs give a zero-length data interval, "
            f"so there is no window to ingest. Fix: {FIX_DATA_INTERVAL}."
        )
    if start >= end:
        what = "equal to" if start == end else "after"
        raise FlowServiceConfigError(
            f"Run window is {'empty' if start == end else 'inverted'}: {start_name} {iso_utc(start)} "
            f"(unix {start}) is {what} {end_name} {iso_utc(end)} (unix {end}). The window start must be "
            "earlier than its end; check the values (or swap them)."
        )
    return Window(start, end)


def resolve_window_from_context(window_start: Any, window_end: Any, context: Mapping[str, Any]) -> Window:
    """:func:`resolve_window` with the defaults taken from a task's context."""
    return resolve_window(
        window_start,
        window_end,
        data_interval_start=context.get("data_interval_start"),
        data_interval_end=context.get("data_interval_end"),
    )


def validate_flow_id(flow_id: Any) -> str:
    """Check that ``flow_id`` is a dataflow id (a UUID) and return it stripped."""
    text = flow_id.strip() if isinstance(flow_id, str) else flow_id
    if not isinstance(text, str) or not _UUID.match(text):
        raise FlowServiceConfigError(
            f"flow_id {flow_id!r} is not a dataflow id: Flow Service expects a UUID such as "
            "'3abea21c-7e36-4be1-bec1-d3bad0e3e0de'. Find it in Experience Platform under Sources > "
            "Dataflows (select the dataflow: the id is shown in its properties panel and in the URL), "
            "or with GET /data/foundation/flowservice/flows. Note: the dataflow id is not the source "
            "connection id nor the flow spec id."
        )
    return text


def validate_delta_column(delta_column: Any) -> str | None:
    """Return the delta column name (stripped), or None when not given."""
    if delta_column is None:
        return None
    if not isinstance(delta_column, str) or delta_column.strip().lower() in _NULLISH:
        raise FlowServiceConfigError(
            f"delta_column {delta_column!r} is not a column name; pass the name of the source table's "
            "timestamp column (e.g. 'updated_at'), or leave delta_column unset (file-based sources and "
            "flows whose first run already set it)."
        )
    return delta_column.strip()


def validate_start_time(start_time: Any) -> int | None:
    """Return the optional run start time in unix seconds, or None when not given."""
    if start_time is None:
        return None
    return to_unix_seconds(start_time, "start_time")


def validate_duration(value: float | timedelta, name: str) -> float:
    """A positive duration (seconds or ``timedelta``) as seconds, e.g. ``poll_interval`` or ``timeout``."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise FlowServiceConfigError(
            f"{name} {value!r} must be a positive number of seconds or a timedelta, e.g. {name}=60."
        )
    return float(seconds)
