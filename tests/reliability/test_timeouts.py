"""No request hangs: every one has a connect and a read timeout, and retries have a budget.

A server that never answers (the emulator's ``slow`` fault) or never accepts (a listening socket
whose accept queue is full) costs at most ``attempts x timeout`` plus backoff, for the sync hook,
the async hook, the IMS token request, the create path and the trigger.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest

from airflow_provider_flowservice._retry import RetryPolicy
from airflow_provider_flowservice.exceptions import FlowServiceRetryError
from airflow_provider_flowservice.hooks.flow_service import FlowServiceAsyncHook, FlowServiceHook
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator
from airflow_provider_flowservice.triggers.flow_service import FlowServiceRunTrigger
from tests.reliability._support import FAST, JAN1, JAN2, polls

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 0.3
POLICY = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02, max_total_seconds=30)
BOUND = POLICY.max_attempts * (TIMEOUT + POLICY.max_backoff) + 8.0
"""The longest a call may take: every attempt times out, plus backoff, plus slack for reading the
connection, the token request and a busy machine (still far below :data:`HANG`)."""
HANG = 20.0
"""How long the emulator sits on a request: far beyond every bound asserted here."""


@pytest.fixture
def slow_conn(emu: FlowServiceEmulator, define_conn: Callable[..., str]) -> str:
    return define_conn("aep_slow", read_timeout=TIMEOUT, connect_timeout=TIMEOUT)


def test_sync_read_never_hangs(emu: FlowServiceEmulator, slow_conn: str) -> None:
    flow = emu.add_flow()
    emu.inject("slow", method="GET", delay=HANG, times=10)
    started = time.monotonic()
    with pytest.raises(FlowServiceRetryError, match="read timeout"):
        FlowServiceHook(slow_conn, retry=POLICY).get_flow(flow)
    assert time.monotonic() - started < BOUND
    assert len([r for r in emu.requests if r.fault == "slow"]) == POLICY.max_attempts


def test_token_request_never_hangs(emu: FlowServiceEmulator, slow_conn: str) -> None:
    emu.inject("slow", path="/ims", delay=HANG, times=10)
    started = time.monotonic()
    with pytest.raises(FlowServiceRetryError, match="read timeout"):
        FlowServiceHook(slow_conn, retry=POLICY).get_run("some-run")
    assert time.monotonic() - started < BOUND
    assert [r.path for r in emu.requests] == ["/ims/token/v3"] * POLICY.max_attempts


async def test_async_read_never_hangs(emu: FlowServiceEmulator, slow_conn: str) -> None:
    flow = emu.add_flow()
    run_id = FlowServiceHook(retry=FAST).create_run(flow, JAN1, JAN2).run_id
    emu.inject("slow", method="GET", delay=HANG, times=10)
    started = time.monotonic()
    async with FlowServiceAsyncHook(slow_conn, retry=POLICY) as hook:
        with pytest.raises(FlowServiceRetryError, match="read timeout"):
            await hook.get_run(run_id)
    assert time.monotonic() - started < BOUND


def test_create_never_hangs(emu: FlowServiceEmulator, slow_conn: str) -> None:
    """Unanswered POSTs: the look-ups and the settle waits stay inside the retry budget too."""
    flow = emu.add_flow()
    budget = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02, max_total_seconds=2.0)
    emu.inject("slow", method="POST", delay=HANG, times=10)
    started = time.monotonic()
    with pytest.raises(FlowServiceRetryError):
        FlowServiceHook(slow_conn, retry=budget).create_run(flow, JAN1, JAN2)
    assert time.monotonic() - started < budget.max_total_seconds + TIMEOUT * 2 + 1.0


async def test_trigger_polls_through_unanswered_requests(emu: FlowServiceEmulator, slow_conn: str) -> None:
    flow = emu.add_flow(polls_to_finish=1)
    run_id = FlowServiceHook(retry=FAST).create_run(flow, JAN1, JAN2).run_id
    emu.inject("slow", method="GET", delay=HANG, times=4)
    trigger = FlowServiceRunTrigger(
        run_id, flow_service_conn_id=slow_conn, poll_interval=0.05, end_time=time.time() + 20,
        retry=POLICY.to_dict(),
    )
    started = time.monotonic()
    events = [e async for e in trigger.run()]
    assert time.monotonic() - started < 4 * (TIMEOUT + POLICY.max_backoff) + 1.5
    assert events[0].payload["status"] == "terminal"
    assert len([r for r in polls(emu, run_id) if r.fault == "slow"]) == 4


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that accepts no connection: a listening socket whose one-slot queue is already full."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=2)
    try:
        yield port
    finally:
        filler.close()
        server.close()


def test_connect_never_hangs(
    emu: FlowServiceEmulator, define_conn: Callable[..., str], black_hole: int
) -> None:
    # the token comes from the emulator; Flow Service itself is the host nobody answers on
    conn_id = define_conn("aep_black_hole", host=f"http://127.0.0.1:{black_hole}", connect_timeout=TIMEOUT)
    started = time.monotonic()
    with pytest.raises(FlowServiceRetryError) as info:
        FlowServiceHook(conn_id, retry=POLICY).get_run("some-run")
    assert time.monotonic() - started < BOUND
    assert "timed out" in str(info.value).lower() or "timeout" in str(info.value).lower()
    assert f"127.0.0.1:{black_hole}" in str(info.value)
    assert emu.token_requests == 1


async def test_async_connect_never_hangs(
    emu: FlowServiceEmulator, define_conn: Callable[..., str], black_hole: int
) -> None:
    conn_id = define_conn("aep_black_hole", host=f"http://127.0.0.1:{black_hole}", connect_timeout=TIMEOUT)
    started = time.monotonic()
    async with FlowServiceAsyncHook(conn_id, retry=POLICY) as hook:
        with pytest.raises(FlowServiceRetryError):
            await hook.get_run("some-run")
    assert time.monotonic() - started < BOUND
