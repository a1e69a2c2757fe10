"""The trigger's bounds: no hot loop at poll_interval 0, a bounded event, and an upgrade that resumes.

Against the emulator on 127.0.0.1 (the ``emu`` fixture of tests/triggers).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import time

import pytest

from airflow_provider_flowservice._outcome import apply_outcome
from airflow_provider_flowservice.exceptions import FlowServiceRunError
from airflow_provider_flowservice.triggers import flow_service as trigger_module
from airflow_provider_flowservice.triggers.flow_service import (
    MAX_ERROR_CHARS,
    MAX_EVENT_ERRORS,
    MIN_POLL_INTERVAL,
    FlowServiceRunTrigger,
)
from tests.triggers.test_flow_service import FAST_RETRY, collect, create_run, gets_of


@pytest.fixture
def emu(flow_service_conn):
    return flow_service_conn


pytestmark = pytest.mark.timeout(60)

RELEASED_CLASSPATH = "airflow_provider_flowservice.triggers.flow_service.FlowServiceRunTrigger"


def released_kwargs(run_id: str, flow_id: str) -> dict:
    """Exactly what FlowServiceRunTrigger.serialize() of release 0.1.0 wrote (its six kwargs)."""
    return json.loads(
        json.dumps(
            {
                "run_id": run_id,
                "flow_service_conn_id": "flow_service_default",
                "poll_interval": 0.02,
                "end_time": time.time() + 20,
                "retry": FAST_RETRY.to_dict(),
                "flow_id": flow_id,
            }
        )
    )


async def test_a_trigger_serialized_by_the_released_version_resumes(emu) -> None:
    flow = emu.add_flow(polls_to_finish=2)
    run_id = create_run(emu, flow)
    module, _, name = RELEASED_CLASSPATH.rpartition(".")
    cls = getattr(importlib.import_module(module), name)  # what the triggerer does with the row
    trigger = cls(**released_kwargs(run_id, flow))
    events = await collect(trigger)
    assert [e.payload["status"] for e in events] == ["terminal"]
    assert events[0].payload["run_id"] == run_id and events[0].payload["run_status"] == "success"
    # and what the new code writes back is still loadable by the same path, with the same keys
    path, kwargs = trigger.serialize()
    assert path == RELEASED_CLASSPATH
    assert set(released_kwargs(run_id, flow)) <= set(kwargs)
    assert cls(**json.loads(json.dumps(kwargs))).serialize() == (path, kwargs)


async def test_poll_interval_zero_does_not_poll_in_a_hot_loop(emu, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(trigger_module.MIN_POLL_INTERVAL_ENV)  # the real floor, not the test suite's
    flow = emu.add_flow(polls_to_finish=10_000)
    run_id = create_run(emu, flow)
    trigger = FlowServiceRunTrigger(
        run_id, poll_interval=0, end_time=time.time() + 60, retry=FAST_RETRY.to_dict()
    )
    assert trigger.poll_interval == MIN_POLL_INTERVAL
    task = asyncio.ensure_future(collect(trigger))
    await asyncio.sleep(2.5 * MIN_POLL_INTERVAL)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 1 <= gets_of(emu, run_id) <= 3  # one per second at most, where 0 s polled thousands of times


async def test_the_event_carries_a_bounded_list_of_run_errors(emu) -> None:
    many = [
        {"code": f"CONNECTOR-{i}-500", "message": f"file {i} unreadable " + "x" * 5000} for i in range(60)
    ]
    repeated = [{"code": "CONNECTOR-1-400", "message": "bad row"}] * 300
    flow = emu.add_flow(polls_to_finish=0, outcome="failed", errors=repeated + many)
    run_id = create_run(emu, flow)
    (event,) = await collect(FlowServiceRunTrigger(run_id, poll_interval=0.01, retry=FAST_RETRY.to_dict()))
    summary = event.payload["summary"]
    errors = summary["errors"]
    assert len(errors) == MAX_EVENT_ERRORS + 1
    assert errors[0]["code"] == "CONNECTOR-1-400" and errors[0]["message"] == "bad row"  # one line, counted
    assert all(len(e["message"]) <= MAX_ERROR_CHARS for e in errors)
    assert (
        errors[-1]["code"] == "more-errors"
        and "41 more error(s) of 41 other kind(s)" in errors[-1]["message"]
    )
    assert summary["errors_omitted"] == 41
    assert len(json.dumps(event.payload)) < 20_000
    with pytest.raises(FlowServiceRunError) as info:  # the task's message still counts them right
        apply_outcome(summary)
    assert "bad row" in str(info.value) and "41 more error(s)" in str(info.value)
