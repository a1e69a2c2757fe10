"""What a finished flow run means for the Airflow task, decided in one place.

The operator (blocking and deferred), the sensor and trigger-event handling all apply the same rules:

- ``failed``: raise :class:`FlowServiceRunError` with the run id, status and every error;
- ``partialSuccess``: raise, unless ``allow_partial_success=True``, then succeed with a warning;
- ``success``: succeed; errors below the flow's threshold (a success may carry some) are logged
  as a warning;
- a run that reports completion with any other status (e.g. ``Cancelled``): raise, naming the
  status: the provider cannot tell whether the window was ingested.

Every function accepts a :class:`FlowRun` or its :meth:`FlowRun.summary` dict (what travels in
trigger events), so deferred and blocking paths give the same messages.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_flowservice._window import iso_utc
from airflow_provider_flowservice.exceptions import FlowServiceError, FlowServiceRunError
from airflow_provider_flowservice.models import FlowRun, RunError
from airflow_provider_flowservice.status import FlowRunStatus

log = logging.getLogger(__name__)

RunLike = FlowRun | Mapping[str, Any]
"""A :class:`FlowRun` or a ``FlowRun.summary()`` dict."""

#: ``status`` values of the trigger's event (here so the operator and sensor need not import the
#: trigger module, and with it ``airflow.triggers.base``, when a DAG file is parsed).
EVENT_TERMINAL = "terminal"
EVENT_TIMEOUT = "timeout"
EVENT_ERROR = "error"


def as_summary(run: RunLike) -> dict[str, Any]:
    """The JSON-safe summary dict of a run (``FlowRun.summary()`` shape)."""
    if isinstance(run, FlowRun):
        return run.summary()
    return dict(run)


def _reported_errors(run: RunLike) -> list[RunError]:
    """Every error as reported, repeats kept (a summary item may carry ``count``), in order."""
    if isinstance(run, FlowRun):
        return list(run.errors)
    errors: list[RunError] = []
    for item in run.get("errors") or ():
        if isinstance(item, RunError):
            errors.append(item)
        elif isinstance(item, Mapping):
            error = RunError(code=str(item.get("code") or ""), message=str(item.get("message") or ""))
            errors.extend([error] * _count(item.get("count")))
    return errors


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def run_errors(run: RunLike) -> tuple[RunError, ...]:
    """All errors a run reports (status summary and activities), deduplicated, in order."""
    return tuple(dict.fromkeys(_reported_errors(run)))


def count_errors(errors: Iterable[RunError]) -> list[tuple[RunError, int]]:
    """Distinct errors (same code and message) with how often each was reported, first seen first.

    An error object with a ``count`` attribute counts that many times.
    """
    counts: dict[tuple[str, str], list[Any]] = {}
    for error in errors:
        key = (error.code, error.message)
        entry = counts.setdefault(key, [error, 0])
        entry[1] += _count(getattr(error, "count", 1))
    return [(error, n) for error, n in counts.values()]


def format_errors(errors: Iterable[RunError]) -> str:
    """Every distinct error as ``CODE: message; CODE: message (x37)``: repeats are counted, not hidden."""
    counted = count_errors(errors)
    if not counted:
        return "no error details reported"
    shown = "; ".join(
        (f"{str(e).rstrip('. ')} (x{n})" if n > 1 else str(e)) for e, n in counted
    )
    # Callers end the sentence themselves; a message's own full stop would double it.
    return shown.rstrip(". ")


def run_status(run: RunLike) -> FlowRunStatus:
    """The parsed status of a run or summary dict."""
    if isinstance(run, FlowRun):
        return run.status
    completed = run.get("completed_at")
    done = isinstance(completed, int) and not isinstance(completed, bool) and completed > 0
    return FlowRunStatus.parse(run.get("status"), completed=done)


def apply_outcome(
    run: RunLike,
    *,
    allow_partial_success: bool = False,
    logger: logging.Logger | Any | None = None,
    run_url: str | None = None,
) -> FlowRunStatus:
    """Apply the outcome rules to a terminal run: return its status, or raise.

    :param run: the finished run (``FlowRun`` or its summary dict).
    :param allow_partial_success: treat ``partialSuccess`` as success (with a warning).
    :param logger: where warnings go (the task's logger); defaults to this module's logger.
    :param run_url: link to the run in the Experience Platform UI, added to messages when given.
    :raises FlowServiceRunError: the run failed, or partially succeeded when that is not allowed.
    :raises FlowServiceError: the run is not finished (a caller bug: check ``is_terminal`` first).
    """
    logger = logger or log
    summary = as_summary(run)
    run_id = str(summary.get("run_id"))
    raw = summary.get("status")
    status = run_status(run)
    errors = run_errors(run)
    reported = _reported_errors(run)
    where = f" See {run_url}" if run_url else ""

    if status is FlowRunStatus.FAILED:
        raise FlowServiceRunError(
            f"Flow run {run_id} (flow {summary.get('flow_id')}) ended with status {raw!r}. "
            f"Errors: {format_errors(reported)}.{where}",
            run_id=run_id,
            status=str(raw),
            errors=errors,
        )
    if status is FlowRunStatus.PARTIAL_SUCCESS:
        if not allow_partial_success:
            raise FlowServiceRunError(
                f"Flow run {run_id} (flow {summary.get('flow_id')}) ended with status {raw!r}: some "
                f"records were not ingested. Errors: {format_errors(reported)}. To accept partial "
                f"ingestion, set allow_partial_success=True.{where}",
                run_id=run_id,
                status=str(raw),
                errors=errors,
            )
        logger.warning(
            "Flow run %s ended with status %r; accepted because allow_partial_success=True. Errors: %s",
            run_id,
            raw,
            format_errors(reported),
        )
        return status
    if status is FlowRunStatus.ENDED_UNKNOWN:
        when = _completed_text(summary.get("completed_at"))
        raise FlowServiceRunError(
            f"Flow run {run_id} (flow {summary.get('flow_id')}) reports completion{when} with status "
            f"{raw!r}, which this provider does not know, so it cannot tell whether the window was "
            f"ingested: failing rather than waiting. Check the run in Experience Platform; a retry of "
            f"this task creates a new run (it never reattaches to this one). Errors: "
            f"{format_errors(reported)}.{where}",
            run_id=run_id,
            status=str(raw),
            errors=errors,
        )
    if status is FlowRunStatus.SUCCESS:
        if errors:
            logger.warning(
                "Flow run %s succeeded but reported errors below the dataflow's error threshold: %s",
                run_id,
                format_errors(reported),
            )
        return status
    raise FlowServiceError(f"Flow run {run_id} has not finished (status {raw!r}); no outcome to apply yet.")


def _completed_text(completed: Any) -> str:
    """`` at <ISO time>`` for a completion time in unix ms, or "" when it is not one."""
    try:
        return f" at {iso_utc(completed // 1000)}"
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


def format_summary(run: RunLike, *, window: Any | None = None) -> str:
    """The end-of-run lines a person reads in the task log.

    Run id, final status, window, record counts (input/output/failed), file counts, and the duration
    when the run reports both its start and end.

    :param window: a :class:`~airflow_provider_flowservice._window.Window` (or anything with
        ``describe()``); defaults to the window the run reports.
    """
    s = as_summary(run)
    if window is not None and hasattr(window, "describe"):
        window_text = window.describe()
    elif s.get("window_start") is not None and s.get("window_end") is not None:
        ws, we = int(s["window_start"]), int(s["window_end"])
        window_text = f"{iso_utc(ws)} -> {iso_utc(we)} (unix seconds {ws} -> {we})"
    else:
        window_text = "not reported"

    def counts(data: Mapping[str, Any] | None, kind: str) -> str:
        data = data or {}
        parts = [
            f"{label} {data.get(key) if data.get(key) is not None else 'n/a'}"
            for label, key in (
                ("input", f"input{kind}Count"),
                ("output", f"output{kind}Count"),
                ("failed", f"failed{kind}Count"),
            )
        ]
        return ", ".join(parts)

    duration = s.get("duration_seconds")
    errors = _reported_errors(run)
    lines = [
        f"Flow run {s.get('run_id')} finished: status {s.get('status')!r}",
        f"  flow:     {s.get('flow_id')}",
        f"  window:   {window_text}",
        f"  records:  {counts(s.get('records'), 'Record')}",
        f"  files:    {counts(s.get('files'), 'File')}",
    ]
    if isinstance(duration, int | float):  # failed runs often report no end: say nothing then
        lines.append(f"  duration: {duration:.1f} s")
    if errors:
        lines.append(f"  errors:   {format_errors(errors)}")
    return "\n".join(lines)
