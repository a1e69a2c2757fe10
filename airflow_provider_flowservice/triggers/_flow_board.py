"""Coalesced polls: the triggers of one triggerer that wait on runs of one flow share one list per tick.

Without it every waiting run sends ``GET /runs/{id}`` each tick: a backfill of 16 intervals of one
flow sends 16. With it, triggers of the same (loop, connection, flow, interval) tick together (a
phase derived from the flow id) and a :class:`FlowBoard` sends one ``GET /runs?property=flowId==..``
per tick, newest first, following ``_links.next`` only until every waited run was seen. A trigger
then needs its own ``GET /runs/{id}`` only when:

- its run is not on the list (pages too small, a run the list does not show yet);
- the list says the run has ended: the event is always built from ``GET /runs/{id}``, so the list
  can never end a wait by itself, and events are the same as without coalescing;
- the list failed (429, 5xx, timeout, or a refusal): per-run polling that tick, and the list is
  left alone for a growing number of ticks (a 4xx, e.g. a filter the server refuses: for good);
- every :data:`CHECK_EVERY` polls (spread by run id), so a list that lags behind ``GET /runs/{id}``
  delays a completion by at most that many ticks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import weakref
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_flowservice.models import FlowRun

MAX_LIST_PAGES = 5
"""Pages one tick's list may read; runs beyond them are polled one by one."""
LIST_PAGE_SIZE = 100
CHECK_EVERY = 30
"""A run is read with its own GET at least once in this many ticks, whatever the list says."""
MAX_BACKOFF_TICKS = 32

log = logging.getLogger(__name__)

BoardKey = tuple[str, str, float, str]


def tick_phase(flow_id: str, interval: float) -> float:
    """The flow's offset within the interval: flows spread over it, runs of one flow share it."""
    return interval * zlib.crc32(flow_id.encode()) / 2**32


def next_tick(flow_id: str, interval: float, now: float) -> tuple[int, float]:
    """(index, monotonic time) of the flow's first tick at or after ``now``."""
    phase = tick_phase(flow_id, interval)
    index = math.ceil((now - phase) / interval)
    return index, phase + index * interval


@dataclass
class Snapshot:
    """One tick's list: the waited runs it showed (None: the list failed or was not sent)."""

    runs: dict[str, FlowRun] | None


@dataclass
class FlowBoard:
    """The shared list of one flow's runs for the triggers of one loop (see the module docstring)."""

    conn_id: str
    flow_id: str
    interval: float
    retry: Mapping[str, Any] | None
    waiting: set[str] = field(default_factory=set)
    ticks: dict[int, asyncio.Future[Snapshot]] = field(default_factory=dict)
    skip_until: int = -1
    failures: int = 0
    disabled: bool = False
    requests: int = 0
    """List requests sent (for tests and benchmarks)."""
    _hook: Any = None

    def should_check(self, run_id: str, index: int) -> bool:
        """True on this run's every :data:`CHECK_EVERY`-th tick (its own GET regardless of the list)."""
        return (index + zlib.crc32(run_id.encode())) % CHECK_EVERY == 0

    async def snapshot(self, index: int) -> Snapshot:
        """The list of tick ``index`` (sent once, by whichever trigger asks first)."""
        if self.disabled or index < self.skip_until:
            return Snapshot(None)
        future = self.ticks.get(index)
        if future is None:
            for old in [i for i in self.ticks if i < index - 1]:
                del self.ticks[old]
            future = self.ticks[index] = asyncio.ensure_future(self._fetch(index))
        return await asyncio.shield(future)

    async def _fetch(self, index: int) -> Snapshot:
        from airflow_provider_flowservice._retry import RetryPolicy, is_transient
        from airflow_provider_flowservice.hooks._api import items_of, next_page, runs_params
        from airflow_provider_flowservice.hooks.flow_service import FlowServiceAsyncHook

        if self._hook is None:
            policy = RetryPolicy.from_dict(self.retry) if self.retry is not None else RetryPolicy()
            # one attempt: when the list fails, the triggers poll their runs themselves this tick
            self._hook = FlowServiceAsyncHook(self.conn_id, retry=dataclasses.replace(policy, max_attempts=1))
        hook = self._hook
        wanted = set(self.waiting)
        found: dict[str, FlowRun] = {}
        params: dict[str, Any] | None = runs_params(self.flow_id, limit=LIST_PAGE_SIZE, order_by="-createdAt")
        url: str | None = None
        try:
            settings = await hook.get_settings()
            for _ in range(MAX_LIST_PAGES):
                self.requests += 1
                data = await hook._request("GET", "/runs", params=params, url=url)
                for item in items_of(data):
                    run = FlowRun.from_api(item)
                    if run.id in wanted:
                        found[run.id] = run
                if wanted <= found.keys():
                    break
                nxt = next_page(data, settings, params or {})
                if nxt is None:
                    break
                url, params = nxt
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failures += 1
            if is_transient(exc):
                self.skip_until = index + min(2**self.failures, MAX_BACKOFF_TICKS)
            else:
                self.disabled = True  # e.g. the server refuses the filter: per-run polling from now on
            log.warning(
                "Listing the runs of flow %s failed (%s: %s); its triggers poll their runs one by one %s.",
                self.flow_id,
                type(exc).__name__,
                exc,
                "from now on" if self.disabled else f"for {self.skip_until - index} tick(s)",
            )
            return Snapshot(None)
        self.failures = 0
        return Snapshot(found)

    async def aclose(self) -> None:
        for future in self.ticks.values():
            future.cancel()
        self.ticks.clear()
        if self._hook is not None:
            hook, self._hook = self._hook, None
            await hook.aclose()


@dataclass
class _LoopBoards:
    boards: dict[BoardKey, FlowBoard] = field(default_factory=dict)


_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopBoards] = weakref.WeakKeyDictionary()


def _key(conn_id: str, flow_id: str, interval: float, retry: Mapping[str, Any] | None) -> BoardKey:
    import json

    return (conn_id, flow_id, interval, json.dumps(retry, sort_keys=True))


def join(
    conn_id: str, flow_id: str, interval: float, retry: Mapping[str, Any] | None, run_id: str
) -> FlowBoard:
    """The running loop's board for this flow, with ``run_id`` registered on it."""
    loop = asyncio.get_running_loop()
    boards = _loops.setdefault(loop, _LoopBoards()).boards
    key = _key(conn_id, flow_id, interval, retry)
    board = boards.get(key)
    if board is None:
        board = boards[key] = FlowBoard(conn_id, flow_id, interval, retry)
    board.waiting.add(run_id)
    return board


async def leave(board: FlowBoard, run_id: str) -> None:
    """``run_id`` no longer waits; the last one out closes the board."""
    board.waiting.discard(run_id)
    if board.waiting:
        return
    loop = asyncio.get_running_loop()
    boards = _loops.get(loop)
    key = _key(board.conn_id, board.flow_id, board.interval, board.retry)
    if boards is not None and boards.boards.get(key) is board:
        del boards.boards[key]
    await board.aclose()
