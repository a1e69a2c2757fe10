"""Access tokens that die while a task waits: one renewal and the wait goes on; a second refusal
in a row is a clear auth error; many waiters renewing at once cost one IMS request.

The hook-level versions (one call, 20 threads, 50 async hooks) live in tests/hooks; these run the
operator's blocking wait, the trigger, and 50 triggers sharing one event loop as a triggerer does.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_flowservice.exceptions import FlowServiceAuthError, FlowServiceError
from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator
from airflow_provider_flowservice.triggers.flow_service import FlowServiceRunTrigger
from tests.reliability._support import (
    FAST,
    JAN1,
    Execution,
    async_wait_until,
    context_for,
    execute,
    first_try,
    make_op,
    polls,
    posts,
    prepare_thread,
    status_of,
    status_reads,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)


def run_in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    box: list[Any] = []
    def work() -> None:
        prepare_thread()
        box.append(target())

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread, box


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferrable"])
def test_revoked_mid_wait_renews_once_and_the_wait_goes_on(
    emu: FlowServiceEmulator, deferrable: bool
) -> None:
    flow = emu.add_flow(seconds_to_finish=1.0)
    op = make_op(flow, deferrable=deferrable)
    thread, box = run_in_thread(lambda: execute(op, context_for(first_try())))
    # Mid-wait: after the run exists and two status reads followed (the window look-up before the
    # POST lists runs too, and a revocation there would test the create path instead).
    assert wait_until(lambda: bool(posts(emu)) and len(reads_after_create(emu)) >= 2)
    emu.revoke_tokens()
    thread.join(timeout=30)
    (done,) = box
    assert isinstance(done, Execution)
    assert status_of(emu, done.result) == "success"
    assert emu.token_requests == 2  # the first token, and one renewal
    tokens = [r.headers["authorization"] for r in reads_after_create(emu)]
    assert len(set(tokens)) == 2 and tokens[-1] != tokens[0]
    assert len(posts(emu)) == 1
    assert len(emu.runs_for_flow(flow)) == 1


def reads_after_create(emu: FlowServiceEmulator) -> list[Any]:
    """Status reads recorded after the first ``POST /runs``: the wait's own."""
    created = posts(emu)
    return [r for r in status_reads(emu) if created and r.time > created[0].time]


def test_tokens_expiring_while_the_trigger_waits_are_renewed(emu: FlowServiceEmulator) -> None:
    """Tokens living 1 s while the trigger waits 2.5 s: each is renewed and the wait goes on.

    (Renewal normally happens ahead of expiry; on a busy machine a poll may still arrive just
    after the emulator's expiry and be renewed through one 401. Either way: no error.)
    """
    emu.token_ttl = 1.0
    flow = emu.add_flow(seconds_to_finish=2.5)
    done = execute(make_op(flow, deferrable=True, poll_interval=0.1), context_for(first_try()))
    assert done.events[0].payload["status"] == "terminal"
    assert status_of(emu, done.result) == "success"
    assert emu.token_requests >= 3
    tokens = [r.headers["authorization"] for r in status_reads(emu)]
    assert len(set(tokens)) >= 2  # the trigger itself went on with a renewed token
    assert len(posts(emu)) == 1


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferrable"])
def test_second_refusal_in_a_row_is_a_clear_auth_error(emu: FlowServiceEmulator, deferrable: bool) -> None:
    flow = emu.add_flow(seconds_to_finish=30)
    op = make_op(flow, deferrable=deferrable)
    thread, box = run_in_thread(lambda: execute(op, context_for(first_try()), raise_error=False))
    assert wait_until(lambda: len(polls(emu)) >= 2)
    emu.inject("401", method="GET", path="/flowservice/runs/", times=2)
    thread.join(timeout=30)
    (done,) = box
    error = done.error
    assert isinstance(error, FlowServiceAuthError if not deferrable else FlowServiceError), error
    message = str(error)
    assert "'flow_service_default'" in message
    assert "401013" in message
    assert "a freshly issued IMS token" in message and "org_id" in message  # what to check
    assert emu.token_requests == 2  # one renewal, not a loop
    refused = [r for r in polls(emu) if r.fault == "401"]
    assert len(refused) == 2
    settled = len(emu.requests)
    time.sleep(0.3)
    assert len(emu.requests) == settled  # the wait stopped: auth errors are not polled through
    for token in emu.tokens_issued:
        assert token not in message


async def test_fifty_triggers_renew_with_one_ims_request(emu: FlowServiceEmulator) -> None:
    """A triggerer's loop with 50 waiting triggers; tokens are revoked mid-wait: one IMS request."""
    flow = emu.add_flow(seconds_to_finish=2.5)
    hook = FlowServiceHook(retry=FAST)
    run_ids = [hook.create_run(flow, JAN1 + i * 3600, JAN1 + (i + 1) * 3600).run_id for i in range(50)]
    assert emu.token_requests == 1
    triggers = [
        FlowServiceRunTrigger(r, poll_interval=0.05, end_time=time.time() + 30, retry=FAST.to_dict())
        for r in run_ids
    ]

    async def wait(trigger: FlowServiceRunTrigger) -> dict[str, Any]:
        events = [e async for e in trigger.run()]
        assert len(events) == 1
        return dict(events[0].payload)

    tasks = [asyncio.ensure_future(wait(t)) for t in triggers]
    assert await async_wait_until(lambda: len({r.path for r in polls(emu)}) == 50)
    assert all(status_of(emu, r) != "success" for r in run_ids)  # all still waiting
    emu.revoke_tokens()
    payloads = await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert {p["status"] for p in payloads} == {"terminal"}
    assert {p["run_id"] for p in payloads} == set(run_ids)
    assert emu.token_requests == 2  # one renewal shared by the 50 triggers
    refused_tokens = {r.headers["authorization"] for r in polls(emu)}
    assert len(refused_tokens) == 2
