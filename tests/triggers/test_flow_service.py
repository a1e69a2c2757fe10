"""FlowServiceRunTrigger against the emulator: outcomes, deadline, faults, resume, cancellation, loop lag."""

from __future__ import annotations

import asyncio
import importlib
import itertools
import json
import logging
import re
import time

import pytest

from airflow_provider_flowservice._outcome import apply_outcome
from airflow_provider_flowservice._retry import RetryPolicy
from airflow_provider_flowservice.exceptions import FlowServiceRunError
from airflow_provider_flowservice.hooks.flow_service import FlowServiceAsyncHook, FlowServiceHook
from airflow_provider_flowservice.triggers.flow_service import FlowServiceRunTrigger
from tests.helpers import LogText

WINDOW = (1704067200, 1704153600)
FAST_RETRY = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02, max_total_seconds=2.0)


def create_run(emulator, flow_id: str) -> str:
    hook = FlowServiceHook(retry=FAST_RETRY)
    return hook.create_run(flow_id, *WINDOW).run_id


def make_trigger(run_id: str, **kwargs) -> FlowServiceRunTrigger:
    kwargs.setdefault("poll_interval", 0.02)
    kwargs.setdefault("end_time", time.time() + 20)
    kwargs.setdefault("retry", FAST_RETRY.to_dict())
    return FlowServiceRunTrigger(run_id, **kwargs)


async def collect(trigger: FlowServiceRunTrigger, limit: float = 20.0) -> list:
    events = []

    async def consume():
        async for event in trigger.run():
            events.append(event)

    await asyncio.wait_for(consume(), limit)
    return events


def gets_of(emulator, run_id: str) -> int:
    return sum(1 for r in emulator.requests if r.method == "GET" and r.path.endswith(f"/runs/{run_id}"))


def poll_times(emulator, run_id: str) -> list[float]:
    return [r.time for r in emulator.requests if r.method == "GET" and r.path.endswith(f"/runs/{run_id}")]


def posts_of(emulator) -> int:
    return sum(1 for r in emulator.requests if r.method == "POST" and r.path.endswith("/runs"))


@pytest.fixture
def emu(flow_service_conn):
    return flow_service_conn


@pytest.fixture
def logs(caplog, capsys):
    """Everything logged so far, as text: stdlib logging (Airflow 2) and structlog's stdout (Airflow 3)."""
    caplog.set_level(logging.INFO)

    def read() -> LogText:
        captured = capsys.readouterr()
        return LogText(caplog.text, captured.out + captured.err)

    return read


async def test_success_one_event_and_status_changes_logged_once(emu, logs):
    flow = emu.add_flow(outcome="success", polls_to_finish=4)
    run_id = create_run(emu, flow)
    events = await collect(make_trigger(run_id, flow_id=flow))
    assert len(events) == 1
    payload = events[0].payload
    assert set(payload) == {"status", "run_id", "run_status", "summary", "message"}
    assert payload["status"] == "terminal"
    assert payload["run_id"] == run_id
    assert payload["run_status"] == "success"
    assert payload["summary"]["run_id"] == run_id
    assert payload["summary"]["window_start"] == WINDOW[0]
    json.dumps(payload)  # JSON-safe, as the triggerer stores it
    assert gets_of(emu, run_id) == 5
    text = logs()
    assert text.count(f"Flow run {run_id} status: inProgress") == 1  # logged on change, not every poll
    # the end is not a line of its own: the triggerer logs the event, the task the outcome
    assert text.count(f"Flow run {run_id} status: success") == 0
    # the plan is said once, on the first status line: no line of its own
    first = rf"Flow run {run_id} status: \w+; flow {flow}; the triggerer polls it every 0\.02 s until "
    assert re.search(first, str(text)), str(text)[-2000:]
    assert text.count("the triggerer polls it every") == 1
    assert apply_outcome(payload["summary"]).value == "success"


@pytest.mark.parametrize("outcome", ["failed", "partialSuccess"])
async def test_failed_and_partial_are_terminal_events(emu, outcome):
    flow = emu.add_flow(outcome=outcome, polls_to_finish=1)
    run_id = create_run(emu, flow)
    (event,) = await collect(make_trigger(run_id))
    assert event.payload["status"] == "terminal"
    assert event.payload["run_status"] == outcome
    assert event.payload["summary"]["errors"][0]["code"] == "CONNECTOR-2001-500"
    with pytest.raises(FlowServiceRunError, match=run_id):
        apply_outcome(event.payload["summary"])


async def test_unknown_and_capitalised_statuses(emu):
    flow = emu.add_flow(outcome="failed", polls_to_finish=3, status_case="title", extra_statuses=["queued"])
    run_id = create_run(emu, flow)
    (event,) = await collect(make_trigger(run_id))
    assert event.payload["status"] == "terminal"
    assert event.payload["run_status"] == "Failed"


async def test_timeout_event_when_deadline_passes(emu):
    flow = emu.add_flow(seconds_to_finish=600)
    run_id = create_run(emu, flow)
    started = time.monotonic()
    # poll_interval far beyond the deadline: the trigger must sleep only until the deadline
    (event,) = await collect(make_trigger(run_id, poll_interval=30, end_time=time.time() + 0.5))
    elapsed = time.monotonic() - started
    assert event.payload["status"] == "timeout"
    assert event.payload["run_status"] == "inProgress"
    assert event.payload["summary"]["run_id"] == run_id
    assert run_id in event.payload["message"] and "'inProgress'" in event.payload["message"]
    assert 0.4 < elapsed < 3


async def test_deadline_already_past_still_looks_once(emu):
    flow = emu.add_flow(polls_to_finish=0)
    run_id = create_run(emu, flow)
    (event,) = await collect(make_trigger(run_id, end_time=time.time() - 10))
    assert event.payload["status"] == "terminal"  # the last look found it finished
    assert gets_of(emu, run_id) == 1


async def test_transient_faults_are_survived(emu, logs):
    flow = emu.add_flow(polls_to_finish=2)
    run_id = create_run(emu, flow)
    # more faults than the hook's retry budget (2 attempts): the trigger itself keeps polling
    emu.inject("503", path=f"/runs/{run_id}", times=3)
    emu.inject("429", path=f"/runs/{run_id}", times=2)
    emu.inject("reset", path=f"/runs/{run_id}", times=1)
    emu.inject("500", path=f"/runs/{run_id}", times=1)
    (event,) = await collect(make_trigger(run_id))
    assert event.payload["status"] == "terminal"
    assert event.payload["run_status"] == "success"
    assert not emu.pending_faults
    assert "Transient error polling" in logs()


async def test_a_retry_after_beyond_the_retry_budget_holds_the_next_poll_off(emu, logs):
    flow = emu.add_flow(polls_to_finish=1)
    run_id = create_run(emu, flow)
    emu.inject("429", path=f"/runs/{run_id}", retry_after="2.5")  # FAST_RETRY allows 2 s in all
    (event,) = await collect(make_trigger(run_id))
    assert event.payload["run_status"] == "success"
    times = poll_times(emu, run_id)
    assert times[1] - times[0] >= 2.4  # not the 0.02 s poll interval
    assert "Retry-After" in logs()


async def test_transient_faults_until_deadline_give_timeout_not_error(emu):
    flow = emu.add_flow(polls_to_finish=0)
    run_id = create_run(emu, flow)
    emu.inject("503", path=f"/runs/{run_id}", times=1000)
    (event,) = await collect(make_trigger(run_id, end_time=time.time() + 0.6))
    emu.clear_faults()
    assert event.payload["status"] == "timeout"
    assert event.payload["run_status"] is None and event.payload["summary"] is None


async def test_not_found_is_an_error_event(emu):
    emu.add_flow()
    missing = "00000000-0000-4000-8000-000000000000"
    started = time.monotonic()
    (event,) = await collect(make_trigger(missing))
    assert time.monotonic() - started < 5
    assert event.payload["status"] == "error"
    assert event.payload["run_id"] == missing
    assert "404" in event.payload["message"] or "not found" in event.payload["message"].lower()


async def test_auth_failure_is_an_error_event_without_secret(emu, monkeypatch):
    flow = emu.add_flow()
    run_id = create_run(emu, flow)
    monkeypatch.setenv("AIRFLOW_CONN_WRONG_SECRET", emu.connection_json())
    conn = json.loads(emu.connection_json())
    conn["password"] = "definitely-wrong-secret-value"
    monkeypatch.setenv("AIRFLOW_CONN_WRONG_SECRET", json.dumps(conn))
    (event,) = await collect(make_trigger(run_id, flow_service_conn_id="wrong_secret"))
    assert event.payload["status"] == "error"
    assert "definitely-wrong-secret-value" not in json.dumps(event.payload)
    assert emu.client_secret not in json.dumps(event.payload)


def test_serialize_is_json_safe_and_secret_free(emu):
    trigger = make_trigger("run-1", flow_id="f-1", end_time=1234.5)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_flowservice.triggers.flow_service.FlowServiceRunTrigger"
    assert kwargs == {
        "run_id": "run-1",
        "flow_service_conn_id": "flow_service_default",
        "poll_interval": 0.02,
        "end_time": 1234.5,
        "retry": FAST_RETRY.to_dict(),
        "flow_id": "f-1",
    }
    text = json.dumps(kwargs)
    assert emu.client_secret not in text and emu.client_id not in text
    assert RetryPolicy.from_dict(kwargs["retry"]) == FAST_RETRY


async def test_rebuilt_trigger_resumes_the_same_run(emu):
    flow = emu.add_flow(polls_to_finish=6)
    run_id = create_run(emu, flow)
    first = make_trigger(run_id, poll_interval=0.05)
    task = asyncio.ensure_future(collect(first))
    for _ in range(200):  # wait for at least two polls, bounded
        if gets_of(emu, run_id) >= 2:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    polls_before = gets_of(emu, run_id)
    assert polls_before >= 2

    classpath, kwargs = first.serialize()
    module, name = classpath.rsplit(".", 1)
    rebuilt = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))
    (event,) = await collect(rebuilt)
    assert event.payload["run_id"] == run_id
    assert event.payload["run_status"] == "success"
    assert gets_of(emu, run_id) > polls_before
    assert posts_of(emu) == 1  # nothing re-created


class RecordingTrigger(FlowServiceRunTrigger):
    """Keeps the hook it made, so the test can check it was closed."""

    hooks: list[FlowServiceAsyncHook] = []

    def _make_hook(self):
        hook = super()._make_hook()
        RecordingTrigger.hooks.append(hook)
        return hook


async def test_cancellation_closes_hook_and_reraises(emu, logs):
    flow = emu.add_flow(seconds_to_finish=600)
    run_id = create_run(emu, flow)
    RecordingTrigger.hooks = []
    trigger = RecordingTrigger(
        run_id, poll_interval=0.05, end_time=time.time() + 30, retry=FAST_RETRY.to_dict()
    )
    task = asyncio.ensure_future(collect(trigger))
    for _ in range(200):
        if gets_of(emu, run_id) >= 1:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (hook,) = RecordingTrigger.hooks
    assert hook._session is None  # aclose() ran
    assert "the trigger was cancelled" in logs()
    polls = gets_of(emu, run_id)
    await asyncio.sleep(0.2)
    assert gets_of(emu, run_id) == polls  # no polling after cancellation


async def test_hook_closed_after_normal_end(emu):
    flow = emu.add_flow(polls_to_finish=0)
    run_id = create_run(emu, flow)
    RecordingTrigger.hooks = []
    trigger = RecordingTrigger(
        run_id, poll_interval=0.01, end_time=time.time() + 10, retry=FAST_RETRY.to_dict()
    )
    await collect(trigger)
    assert RecordingTrigger.hooks[0]._session is None


async def test_never_blocks_the_event_loop(emu):
    flow = emu.add_flow(polls_to_finish=2)
    run_id = create_run(emu, flow)
    emu.inject("slow", path=f"/runs/{run_id}", delay=0.8, times=2)
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker():
        while not done.is_set():
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - before - 0.01)

    tick = asyncio.ensure_future(ticker())
    started = time.monotonic()
    try:
        (event,) = await collect(make_trigger(run_id))
    finally:
        done.set()
        await tick
    assert event.payload["run_status"] == "success"
    assert time.monotonic() - started >= 1.5  # the slow answers really were slow
    assert len(lags) > 50
    assert max(lags) < 0.15, f"event loop stalled for {max(lags):.3f} s"


# ------------------------------------------------ schedule: first polls spread, then a steady cadence


def test_first_poll_offset_is_stable_per_run_and_spread_over_the_interval():
    offsets = [FlowServiceRunTrigger(f"run-{i}", poll_interval=30)._first_poll_delay() for i in range(200)]
    assert all(0 <= o < 30 for o in offsets)
    assert max(offsets) - min(offsets) > 25  # spread over the interval, not bunched
    rebuilt = FlowServiceRunTrigger("run-7", poll_interval=30)  # e.g. after a triggerer restart
    assert rebuilt._first_poll_delay() == offsets[7]


def test_next_poll_keeps_the_cadence_and_skips_missed_ticks():
    trigger = FlowServiceRunTrigger("r", poll_interval=10)
    assert trigger._next_poll(100.0, 101.0) == 110.0  # a quick poll: the next tick
    assert trigger._next_poll(100.0, 109.9) == 110.0
    assert trigger._next_poll(100.0, 125.0) == 130.0  # a 25 s poll skips two ticks and keeps the phase


async def test_triggers_started_together_spread_their_first_polls(emu):
    """A triggerer restart starts every trigger in one tick; their first polls must not all follow."""
    flow = emu.add_flow(polls_to_finish=0)
    hook = FlowServiceHook(retry=FAST_RETRY)
    run_ids = [hook.create_run(flow, WINDOW[0] + 60 * i, WINDOW[0] + 60 * i + 30).run_id for i in range(12)]
    interval = 0.8
    triggers = [make_trigger(run_id, poll_interval=interval) for run_id in run_ids]
    started = time.time()
    results = await asyncio.gather(*(collect(t) for t in triggers))
    assert all(event.payload["status"] == "terminal" for (event,) in results)
    firsts = [min(poll_times(emu, run_id)) - started for run_id in run_ids]
    assert max(firsts) - min(firsts) > interval / 3, f"first polls bunched: {sorted(firsts)}"
    for trigger, first in zip(triggers, firsts, strict=True):
        assert abs(first - trigger._first_poll_delay()) < 0.3, (first, trigger._first_poll_delay())


async def test_slow_answers_do_not_stretch_the_poll_cadence(emu):
    flow = emu.add_flow(polls_to_finish=3)
    run_id = create_run(emu, flow)
    emu.inject("slow", path=f"/runs/{run_id}", delay=0.3, times=4)
    (event,) = await collect(make_trigger(run_id, poll_interval=0.5))
    assert event.payload["run_status"] == "success"
    times = poll_times(emu, run_id)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) == 4
    # one interval between poll starts, not interval + answer time (0.8 s)
    assert all(0.35 < gap < 0.7 for gap in gaps), gaps
