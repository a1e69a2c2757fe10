"""Wait for a flow run in the triggerer, without holding a worker slot.

The trigger polls ``GET /runs/{id}`` through the async hook, so it never blocks the triggerer's
event loop (no sync HTTP, no ``time.sleep``). It carries everything it needs (run id, connection
id, poll interval, absolute deadline and retry settings) in its serialized kwargs, so a triggerer
restart resumes polling the same run, and it fires exactly one event.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
import zlib
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

# The event ``status`` values and the wait policy live in cheap modules, so the operator and sensor
# need not import this one (and airflow.triggers.base) while a DAG file is parsed; see __all__.
from airflow_provider_flowservice._outcome import EVENT_ERROR, EVENT_TERMINAL, EVENT_TIMEOUT
from airflow_provider_flowservice._watch import RunWatch
from airflow_provider_flowservice.models import FlowRun

#: A poll request may run at least this long even when the deadline is nearer (one last look).
MIN_REQUEST_SECONDS = 5.0

COALESCE_POLLS = True
"""Triggers that know their flow share one list request per flow per tick (``triggers/_flow_board.py``)."""

MIN_POLL_INTERVAL = 1.0
"""Shortest interval between two polls of one trigger: Airflow allows ``poke_interval=0``, which
would poll in a hot loop. The environment variable :data:`MIN_POLL_INTERVAL_ENV` lowers it (the
provider's own test suite does, to run fast); nothing else should."""
MIN_POLL_INTERVAL_ENV = "FLOW_SERVICE_MIN_POLL_INTERVAL"


def poll_interval_floor() -> float:
    """:data:`MIN_POLL_INTERVAL`, or the lower value the environment sets (never below 1 ms)."""
    raw = os.environ.get(MIN_POLL_INTERVAL_ENV)
    try:
        return max(float(raw), 0.001) if raw else MIN_POLL_INTERVAL
    except ValueError:
        return MIN_POLL_INTERVAL


#: Besides the last poll, the deadline leaves this much of ``execution_timeout`` (at most; 5 % of
#: it when shorter) for the trigger's event to reach the task before Airflow's own cut-off.
DEADLINE_MARGIN_SECONDS = 10.0


def deferral_end_time(
    timeout: float,
    *,
    execution_timeout: timedelta | None = None,
    started_at: datetime | None = None,
    now: float | None = None,
) -> float:
    """The trigger's ``end_time``: ``now + timeout``, but ahead of Airflow's ``execution_timeout``.

    Airflow ends a deferred task at ``start_date + execution_timeout`` with a bare deferral-timeout
    error that skips the task's completion code; the trigger's own deadline must come first, early
    enough for its last poll (up to :data:`MIN_REQUEST_SECONDS`) and for the event to be handled.
    Used by the operator and the sensor.
    """
    end = (time.time() if now is None else now) + timeout
    if execution_timeout and started_at is not None:
        limit = execution_timeout.total_seconds()
        margin = MIN_REQUEST_SECONDS + min(DEADLINE_MARGIN_SECONDS, 0.05 * limit)
        end = min(end, started_at.timestamp() + limit - margin)
    return end


MAX_EVENT_ERRORS = 20
"""Distinct run errors an event carries (it is stored in the metadata database); the rest are counted."""
MAX_ERROR_CHARS = 500
"""Longest error message (and code) an event carries; longer ones are cut."""


def _cut(text: Any, limit: int) -> str:
    text = str(text or "")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def bounded_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """``summary`` with its errors bounded in count and size: distinct errors with a ``count``
    (repeats folded), at most :data:`MAX_EVENT_ERRORS` of them, and one line that counts the rest."""
    counted: dict[tuple[str, str], int] = {}
    for item in summary.get("errors") or ():
        key = (_cut(item.get("code"), MAX_ERROR_CHARS), _cut(item.get("message"), MAX_ERROR_CHARS))
        counted[key] = counted.get(key, 0) + int(item.get("count") or 1)
    items = list(counted.items())
    errors: list[dict[str, Any]] = [
        {"code": code, "message": message, "count": n} for (code, message), n in items[:MAX_EVENT_ERRORS]
    ]
    rest = items[MAX_EVENT_ERRORS:]
    if rest:
        errors.append(
            {
                "code": "more-errors",
                "message": f"{sum(n for _, n in rest)} more error(s) of {len(rest)} other kind(s), not "
                "carried in the trigger event: see the run in Experience Platform",
                "count": 1,
            }
        )
    return {**summary, "errors": errors, "errors_omitted": sum(n for _, n in rest)}


def _differ(listed: FlowRun, run: FlowRun) -> bool:
    """The run's own GET is not what the same tick's list showed (another status or etag)."""
    return listed.raw_status != run.raw_status or bool(listed.etag and run.etag and listed.etag != run.etag)


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class FlowServiceRunTrigger(BaseTrigger):
    """Poll a flow run until it ends or the deadline passes; fire one event.

    The event payload (a dict)::

        {"status": "terminal" | "timeout" | "error",
         "run_id": str,
         "run_status": raw status string of the last poll, or None,
         "summary": FlowRun.summary() of the last successful poll, or None,
         "message": str}            # for a person: what happened and what to do

    The operator and the sensor turn a ``terminal`` event's ``summary`` into the task's outcome.

    :param run_id: the flow run to watch.
    :param flow_service_conn_id: Airflow connection id (only the id travels; never a secret).
    :param poll_interval: seconds between polls, at least :data:`MIN_POLL_INTERVAL` (a smaller
        value, 0 included, is raised to it). Each trigger polls at its own offset within the
        interval (derived from the run id), so triggers started together do not poll together.
    :param end_time: deadline as unix epoch seconds; a ``timeout`` event fires once it passes.
    :param retry: ``RetryPolicy.to_dict()`` for the async hook; None = the hook's default.
    :param flow_id: the dataflow id, for messages only.
    """

    def __init__(
        self,
        run_id: str,
        *,
        flow_service_conn_id: str = "flow_service_default",
        poll_interval: float = 30.0,
        end_time: float | None = None,
        retry: Mapping[str, Any] | None = None,
        flow_id: str | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.run_id = run_id
        self.flow_service_conn_id = flow_service_conn_id
        self.poll_interval = max(float(poll_interval), poll_interval_floor())
        self.end_time = float(end_time) if end_time is not None else time.time() + 24 * 3600
        self.retry = dict(retry) if retry is not None else None
        self.flow_id = flow_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and JSON-safe kwargs (ids, numbers and retry settings; no secret)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "run_id": self.run_id,
                "flow_service_conn_id": self.flow_service_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "retry": self.retry,
                "flow_id": self.flow_id,
            },
        )

    def _make_hook(self) -> Any:
        from airflow_provider_flowservice._retry import RetryPolicy
        from airflow_provider_flowservice.hooks.flow_service import FlowServiceAsyncHook

        policy = RetryPolicy.from_dict(self.retry) if self.retry is not None else None
        return FlowServiceAsyncHook(self.flow_service_conn_id, retry=policy)

    def _event(self, status: str, last: FlowRun | None, message: str) -> TriggerEvent:
        return TriggerEvent(  # type: ignore[no-untyped-call]
            {
                "status": status,
                "run_id": self.run_id,
                "run_status": last.raw_status if last else None,
                "summary": bounded_summary(last.summary()) if last else None,
                "message": message,
            }
        )

    def _first_poll_delay(self) -> float:
        """This trigger's offset within the poll interval, in [0, poll_interval).

        A triggerer (re)start starts every trigger in the same tick; polling all of them at once
        would stall its event loop. Derived from the run id: spread like random, but reproducible.
        """
        return self.poll_interval * zlib.crc32(self.run_id.encode()) / 2**32

    def _next_poll(self, scheduled: float, now: float) -> float:
        """The next tick of this trigger's steady cadence that is still ahead (a slow poll skips ticks)."""
        following = scheduled + self.poll_interval
        if following < now and self.poll_interval > 0:
            following += math.ceil((now - following) / self.poll_interval) * self.poll_interval
        return following

    def _what(self) -> str:
        return f"flow run {self.run_id}" + (f" (flow {self.flow_id})" if self.flow_id else "")

    def _error_message(self, exc: BaseException) -> str:
        return (
            f"Stopped waiting for {self._what()}: {type(exc).__name__}: {exc}. This error does not go "
            "away by polling again; the run itself may still be going on in Experience Platform."
        )

    def _timeout_message(self, polls: int, last: FlowRun | None) -> str:
        return (
            f"Timed out waiting for {self._what()}: deadline {_utc(self.end_time)} passed after {polls} "
            f"successful poll(s); last status {last.raw_status if last else None!r}. The run continues "
            "in Experience Platform; raise the timeout to wait longer."
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until terminal, deadline or a non-transient error; yield exactly one event."""
        try:
            hook = self._make_hook()
        except Exception as exc:  # e.g. invalid retry settings
            message = f"Cannot wait for {self._what()}: {type(exc).__name__}: {exc}"
            self.log.error("%s", message)
            yield self._event(EVENT_ERROR, None, message)
            return
        try:
            status, last, message = await self._wait(hook)
        except asyncio.CancelledError:
            self.log.info(
                "Stopped polling %s: the trigger was cancelled (the run goes on in Experience Platform).",
                self._what(),
            )
            raise
        finally:
            await hook.aclose()
        yield self._event(status, last, message)

    async def _wait(self, hook: Any) -> tuple[str, FlowRun | None, str]:
        """Poll (coalesced with the flow's other triggers when ``flow_id`` is known); see :meth:`_poll`."""
        if not self.flow_id or not COALESCE_POLLS:
            return await self._poll(hook, None)
        from airflow_provider_flowservice.triggers import _flow_board

        board = _flow_board.join(
            self.flow_service_conn_id, self.flow_id, self.poll_interval, self.retry, self.run_id
        )
        try:
            return await self._poll(hook, board)
        finally:
            await _flow_board.leave(board, self.run_id)

    def _schedule(self, board: Any, after: float) -> tuple[int, float]:
        """(tick index, monotonic time) of the next poll at or after ``after``."""
        if board is not None:
            from airflow_provider_flowservice.triggers._flow_board import next_tick

            return next_tick(board.flow_id, self.poll_interval, after)
        return -1, after

    async def _read(self, hook: Any, board: Any, index: int) -> FlowRun:
        """This tick's view of the run: the flow's shared list when it shows the run still going,
        else (not listed, ended, list failed, or a periodic check) ``GET /runs/{id}``. A periodic
        check that finds the run other than listed proves the list lags (see ``_flow_board``)."""
        listed: FlowRun | None = None
        if board is not None:
            snapshot = await board.snapshot(index)
            listed = snapshot.runs.get(self.run_id) if snapshot.runs is not None else None
            checked = board.should_check(self.run_id, index)
            if listed is not None and not listed.status.is_terminal and not checked:
                return listed
        run: FlowRun = await hook.get_run(self.run_id)
        if listed is not None and not listed.status.is_terminal and _differ(listed, run):
            board.lags(f"run {self.run_id} is {run.raw_status!r}, listed as {listed.raw_status!r}")
        return run

    async def _poll(self, hook: Any, board: Any) -> tuple[str, FlowRun | None, str]:
        """The polling loop: returns (event status, last run seen, message)."""
        start = time.monotonic()
        index, next_poll = self._schedule(board, start + self._first_poll_delay())
        if board is not None:
            index, next_poll = self._schedule(board, start)
        # Everything else waits for the offset: a triggerer (re)start runs every trigger up to here
        # in one tick, and that tick must stay short.
        await self._sleep_until(next_poll)
        # The plan rides on the first status line, not a line of its own, and the end is not logged
        # here (the triggerer logs the event, the task the outcome): each line costs the triggerer
        # a write to the task's log. (A transient error before the first status names the run too.)
        flow = f"flow {self.flow_id}; " if self.flow_id else ""
        plan = (
            f"{flow}the triggerer polls it every {self.poll_interval} s until {_utc(self.end_time)} "
            f"(unix {int(self.end_time)})."
        )
        watch = RunWatch(self.run_id, self.log, self._what(), plan, log_end=False)
        while True:
            try:
                async with asyncio.timeout(max(self.end_time - time.time(), MIN_REQUEST_SECONDS)):
                    run = await self._read(hook, board, index)
            except Exception as exc:  # not CancelledError, a BaseException: cancelling ends the wait
                hold_off = watch.hold_off(exc)
                if hold_off is None:
                    message = self._error_message(exc)
                    self.log.error("%s", message)
                    return EVENT_ERROR, watch.last, message
            else:
                hold_off = 0.0
                if watch.ended(run):
                    message = f"Flow run {self.run_id} ended with status {run.raw_status!r}."
                    return EVENT_TERMINAL, run, message
            if self.end_time - time.time() <= 0:
                message = self._timeout_message(watch.polls, watch.last)
                self.log.warning("%s", message)
                return EVENT_TIMEOUT, watch.last, message
            now = time.monotonic()
            # the next tick, unless the server asked for longer (a Retry-After beyond the hook's budget)
            if board is not None:
                index, next_poll = self._schedule(board, max(next_poll + 1e-6, now, now + hold_off))
            else:
                next_poll = max(self._next_poll(next_poll, now), now + hold_off)
            await self._sleep_until(next_poll)

    async def _sleep_until(self, when: float) -> None:
        """Sleep until ``when`` (monotonic clock), or until the deadline if that comes first."""
        await asyncio.sleep(max(0.0, min(when - time.monotonic(), self.end_time - time.time())))


__all__ = ["FlowServiceRunTrigger"]
