"""Coalesced polls: triggers of one loop waiting on runs of one flow share one list request per tick.

Against the emulator on 127.0.0.1; runs end after a time (``seconds_to_finish``), not after a number
of GETs, so a run ends whether or not it is read one by one.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from airflow_provider_flowservice.triggers.flow_service import FlowServiceRunTrigger
from tests.triggers.test_flow_service import FAST_RETRY, create_run


@pytest.fixture
def emu(flow_service_conn):
    return flow_service_conn


pytestmark = pytest.mark.timeout(90)

INTERVAL = 0.25


def lists_of(emu) -> int:
    return sum(1 for r in emu.requests if r.method == "GET" and r.path.endswith("/runs"))


def gets_of(emu) -> int:
    return sum(1 for r in emu.requests if r.method == "GET" and "/runs/" in r.path)


async def wait_all(triggers: list[FlowServiceRunTrigger]) -> list[dict]:
    async def one(trigger: FlowServiceRunTrigger) -> dict:
        events = [e async for e in trigger.run()]
        assert len(events) == 1  # exactly one event each
        return events[0].payload

    return await asyncio.wait_for(asyncio.gather(*(one(t) for t in triggers)), 60)


def waiting_trigger(run_id: str, flow: str) -> FlowServiceRunTrigger:
    """A trigger that knows its flow (so it joins the flow's board), polling every INTERVAL."""
    return FlowServiceRunTrigger(
        run_id, poll_interval=INTERVAL, end_time=time.time() + 60, retry=FAST_RETRY.to_dict(), flow_id=flow
    )


def start(emu, flows: int, runs: int, seconds: float) -> list[FlowServiceRunTrigger]:
    triggers = []
    for f in range(flows):
        flow = emu.add_flow(seconds_to_finish=seconds + 0.3 * f, outcome="failed" if f == 1 else "success")
        for _ in range(runs):
            run_id = create_run(emu, flow)
            triggers.append(waiting_trigger(run_id, flow))
    emu.requests.clear()
    return triggers


def check_events(emu, events: list[dict]) -> None:
    for event in events:
        run = emu.runs[event["run_id"]]
        final = run["metrics"]["statusSummary"]["status"]
        assert event["status"] == "terminal", event
        assert event["run_status"] == final and final in ("success", "failed")  # never ended early
        assert event["summary"]["status"] == final


async def test_runs_of_one_flow_share_one_list_request_per_tick(emu) -> None:
    emu.page_size = 100
    triggers = start(emu, flows=3, runs=10, seconds=1.5)
    began = time.monotonic()
    events = await wait_all(triggers)
    elapsed = time.monotonic() - began
    check_events(emu, events)
    ticks = elapsed / INTERVAL + 1
    # per-run polling would send 30 GETs a tick; coalesced: 3 lists a tick, and a GET per run at its end
    # plus the periodic checks (one in 30 ticks per run)
    assert lists_of(emu) <= 3 * ticks + 3
    assert gets_of(emu) <= 30 + 30 * (ticks / 30 + 1)
    assert lists_of(emu) + gets_of(emu) < 30 * ticks / 3


async def test_small_pages_still_see_every_run_end(emu) -> None:
    emu.page_size = 2
    triggers = start(emu, flows=2, runs=7, seconds=1.0)
    events = await wait_all(triggers)
    check_events(emu, events)
    assert lists_of(emu) > 0


async def test_a_refused_list_falls_back_to_per_run_polling(emu) -> None:
    emu.page_size = 100
    triggers = start(emu, flows=1, runs=6, seconds=1.5)
    emu.inject("429", method="GET", path="/runs", times=3)  # the first lists (or GETs) are refused
    emu.inject("503", method="GET", path="/runs", times=3)
    events = await wait_all(triggers)
    check_events(emu, events)
    assert gets_of(emu) >= 6


async def test_a_list_that_never_works_still_ends_every_wait(emu, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that refuses the list for good (400, e.g. the filter): per-run polling, same events."""
    from airflow_provider_flowservice.triggers import _flow_board

    emu.page_size = 100
    triggers = start(emu, flows=1, runs=4, seconds=0.8)
    monkeypatch.setattr(_flow_board, "LIST_PAGE_SIZE", 0)  # limit=0: the emulator answers 400
    events = await wait_all(triggers)
    check_events(emu, events)
    assert lists_of(emu) == 1  # refused once, never asked again


async def test_a_lagging_list_still_shows_each_end_within_one_interval(emu) -> None:
    """The list shows runs as they were 1.5 s ago (new runs not at all); their own GETs are current.

    Runs end 3 s after creation: trusting the list would see each end 1.5 s (6 intervals) late. The
    runs missing from the whole list prove the lag, so the flow's triggers poll their runs one by one.
    """
    emu.page_size = 100
    emu.list_lag = 1.5
    seconds = 3.0
    flow = emu.add_flow(seconds_to_finish=seconds)
    triggers, ends = [], {}
    for _ in range(6):
        run_id = create_run(emu, flow)
        ends[run_id] = time.monotonic() + seconds  # the run ends no later than this
        triggers.append(waiting_trigger(run_id, flow))
    emu.requests.clear()

    async def one(trigger: FlowServiceRunTrigger) -> tuple[dict, float]:
        events = [e async for e in trigger.run()]
        assert len(events) == 1
        return events[0].payload, time.monotonic()

    results = await asyncio.wait_for(asyncio.gather(*(one(t) for t in triggers)), 60)
    check_events(emu, [payload for payload, _ in results])
    lateness = [seen - ends[payload["run_id"]] for payload, seen in results]
    assert max(lateness) <= INTERVAL + 0.5, lateness  # one interval, plus slack for a loaded machine


async def test_a_run_read_other_than_listed_shows_the_list_lags(
    emu, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Every run is on the list, but as it was 1.5 s ago: only a run's own GET can show the lag.

    The runs are listed once created (so none is missing from the list), then start: their own
    GETs show ``inProgress`` while the list still shows ``scheduled`` for 1.5 s. A periodic check
    (every 6 ticks here, 1.5 s) in that time finds its run other than listed, and from then on the
    flow's triggers poll one by one, so each end is seen within one interval. Trusting the list
    until each run's next periodic check would see the ends up to 1.5 s late.
    """
    from airflow_provider_flowservice.triggers import _flow_board

    monkeypatch.setattr(_flow_board, "CHECK_EVERY", 6)
    emu.page_size = 100
    lag = 1.5
    emu.list_lag = lag
    seconds = lag + 0.2 + 3.0
    flow = emu.add_flow(seconds_to_finish=seconds)
    run_ids, ends = [], {}
    for _ in range(6):
        run_id = create_run(emu, flow)
        ends[run_id] = time.monotonic() + seconds  # the run ends no later than this
        run_ids.append(run_id)
    await asyncio.sleep(lag + 0.2)  # every run on the (lagging) list
    triggers = [waiting_trigger(run_id, flow) for run_id in run_ids]
    emu.requests.clear()

    async def one(trigger: FlowServiceRunTrigger) -> tuple[dict, float]:
        events = [e async for e in trigger.run()]
        assert len(events) == 1
        return events[0].payload, time.monotonic()

    with caplog.at_level("WARNING", logger=_flow_board.__name__):
        results = await asyncio.wait_for(asyncio.gather(*(one(t) for t in triggers)), 60)
    check_events(emu, [payload for payload, _ in results])
    assert any("listed as" in r.getMessage() for r in caplog.records)  # seen by a run's own GET
    lateness = [seen - ends[payload["run_id"]] for payload, seen in results]
    assert max(lateness) <= INTERVAL + 0.5, lateness  # one interval, plus slack for a loaded machine
