"""A deferred task's trigger is cancelled mid-poll and rebuilt from its serialized kwargs, in this
process (a new event loop, an empty token cache), and resumes polling the same run. This is what
a triggerer restart does to a trigger; a real triggerer process kill is the deployment test's.

tests/triggers cancels a trigger between polls in the same loop; here the operator defers, the
trigger is cancelled while a status request is in flight, and the task completes from the event
of the rebuilt trigger.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from typing import Any

import pytest

from airflow_provider_flowservice._auth import TOKEN_CACHE
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator
from tests.reliability._support import (
    TaskDeferred,
    context_for,
    first_try,
    make_op,
    polls,
    posts,
    status_of,
)

pytestmark = pytest.mark.timeout(60)


def rebuild(classpath: str, kwargs: dict[str, Any]) -> Any:
    """What the triggerer does with a trigger row: import the class, call it with the kwargs."""
    module, name = classpath.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))


def test_trigger_cancelled_mid_poll_and_rebuilt_from_its_kwargs_resumes_the_same_run(
    emu: FlowServiceEmulator,
) -> None:
    flow = emu.add_flow(polls_to_finish=4)
    op = make_op(flow, deferrable=True, poll_interval=0.05)
    context: Any = context_for(first_try())
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    classpath, kwargs = deferred.value.trigger.serialize()
    run_id = kwargs["run_id"]
    assert run_id == context["ti"].xcoms["return_value"]

    # first triggerer: polls once, then its second poll hangs (slow answer) and the process stops
    emu.inject("slow", method="GET", path=f"/runs/{run_id}", delay=3.0)
    first = rebuild(classpath, kwargs)

    async def first_triggerer() -> float:
        async def consume() -> None:
            async for _ in first.run():
                raise AssertionError("the first triggerer must not fire an event")

        task = asyncio.ensure_future(consume())
        deadline = time.monotonic() + 10
        while not any(r.fault == "slow" for r in polls(emu, run_id)) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert any(r.fault == "slow" for r in polls(emu, run_id)), "no poll in flight"
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - cancelled_at

    assert asyncio.run(first_triggerer()) < 1.0  # an in-flight request does not hold up the stop
    assert status_of(emu, run_id) != "success"
    polls_before = len(polls(emu, run_id))

    # new triggerer process: new loop, no cached token, the same kwargs from the database
    TOKEN_CACHE.clear()
    second = rebuild(classpath, kwargs)
    assert second.serialize() == (classpath, kwargs)  # nothing lost in the round trip

    async def second_triggerer() -> list[Any]:
        return [event async for event in second.run()]

    (event,) = asyncio.run(asyncio.wait_for(second_triggerer(), 20))
    assert event.payload["status"] == "terminal"
    assert event.payload["run_id"] == run_id
    assert event.payload["run_status"] == "success"
    assert len(polls(emu, run_id)) > polls_before

    # the task resumes with the event: success, on the one run created before deferring
    assert op.execute_complete(context, event.payload) == run_id
    assert len(posts(emu)) == 1
    assert [r["id"] for r in emu.runs_for_flow(flow)] == [run_id]


def test_trigger_rebuilt_after_the_deadline_times_out_at_once(emu: FlowServiceEmulator) -> None:
    """The deadline is absolute (epoch seconds in the kwargs): a restart does not extend the wait."""
    flow = emu.add_flow(seconds_to_finish=600)
    op = make_op(flow, deferrable=True, timeout=0.5)
    context: Any = context_for(first_try())
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    classpath, kwargs = deferred.value.trigger.serialize()
    assert kwargs["end_time"] <= time.time() + 0.5
    time.sleep(0.6)
    started = time.monotonic()
    rebuilt = rebuild(classpath, kwargs)

    async def run() -> list[Any]:
        return [event async for event in rebuilt.run()]

    (event,) = asyncio.run(asyncio.wait_for(run(), 20))
    assert time.monotonic() - started < 3
    assert event.payload["status"] == "timeout"
    assert event.payload["run_id"] == kwargs["run_id"]
    assert len(posts(emu)) == 1
