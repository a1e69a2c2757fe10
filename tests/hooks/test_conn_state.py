"""One connection read per (event loop, connection id), reused for 60 s (``hooks/_conn_state.py``).

Against the emulator, with the connection reads counted and the entries aged by a fake clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_flowservice.exceptions import FlowServiceAuthError
from airflow_provider_flowservice.hooks import _conn_state
from airflow_provider_flowservice.hooks import flow_service as hooks
from airflow_provider_flowservice.hooks.flow_service import FlowServiceAsyncHook, FlowServiceHook
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator
from tests.hooks.conftest import FAST

pytestmark = pytest.mark.timeout(30)


class Clock:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(_conn_state, "clock", fake)
    return fake


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The connection ids read from Airflow, one entry a read."""
    seen: list[str] = []
    real = hooks._aget_connection

    async def counted(conn_id: str) -> Any:
        seen.append(conn_id)
        return await real(conn_id)

    monkeypatch.setattr(hooks, "_aget_connection", counted)
    return seen


def a_run(em: FlowServiceEmulator) -> str:
    flow = em.add_flow(kind="file")
    return FlowServiceHook(retry=FAST).create_run(flow, 1_651_584_991, 1_651_585_956).run_id


async def test_hooks_on_one_loop_share_one_read_within_the_ttl(
    flow_service_conn: FlowServiceEmulator, reads: list[str], clock: Clock
) -> None:
    run_id = a_run(flow_service_conn)
    hooks_ = [FlowServiceAsyncHook(retry=FAST) for _ in range(20)]
    await asyncio.gather(*(h.get_run(run_id) for h in hooks_))  # started together: still one read
    clock.now += _conn_state.TTL_SECONDS - 1
    await asyncio.gather(*(h.get_run(run_id) for h in hooks_))
    assert reads == ["flow_service_default"]
    states = {id(h._state) for h in hooks_}
    assert len(states) == 1
    for h in hooks_:
        await h.aclose()


async def test_an_edited_connection_is_seen_once_the_entry_expires(
    flow_service_conn: FlowServiceEmulator,
    set_conn: Callable[..., str],
    reads: list[str],
    clock: Clock,
) -> None:
    run_id = a_run(flow_service_conn)
    async with FlowServiceAsyncHook(retry=FAST) as old:
        await old.get_run(run_id)
        set_conn(read_timeout="7")  # edited in Airflow
        clock.now += _conn_state.TTL_SECONDS - 1
        async with FlowServiceAsyncHook(retry=FAST) as new:
            assert (await new.get_settings()).read_timeout == 60.0  # still the first read
            clock.now += 2
            assert (await new.get_settings()).read_timeout == 7.0
        assert (await old.get_settings()).read_timeout == 7.0  # a waiting trigger's hook too
        await old.get_run(run_id)
    assert reads == ["flow_service_default"] * 2


async def test_an_auth_error_drops_the_entry(
    flow_service_conn: FlowServiceEmulator, set_conn: Callable[..., str], reads: list[str], clock: Clock
) -> None:
    """A refused static token: the fixed connection is read on the next request, not after 60 s."""
    run_id = a_run(flow_service_conn)
    set_conn(access_token="a-revoked-static-token")
    async with FlowServiceAsyncHook(retry=FAST) as hook:
        with pytest.raises(FlowServiceAuthError):
            await hook.get_run(run_id)
        set_conn()  # fixed: no static token, the client secret again
        run = await hook.get_run(run_id)  # same hook, same clock time
    assert run.id == run_id
    assert reads == ["flow_service_default"] * 2


async def test_a_failed_read_is_not_kept(
    flow_service_conn: FlowServiceEmulator,
    monkeypatch: pytest.MonkeyPatch,
    set_conn: Callable[..., str],
    reads: list[str],
    clock: Clock,
) -> None:
    run_id = a_run(flow_service_conn)
    monkeypatch.delenv("AIRFLOW_CONN_FLOW_SERVICE_DEFAULT")
    async with FlowServiceAsyncHook(retry=FAST) as hook:
        with pytest.raises(Exception, match="flow_service_default"):
            await hook.get_run(run_id)
        set_conn()
        assert (await hook.get_run(run_id)).id == run_id
    assert reads == ["flow_service_default"] * 2


def test_each_event_loop_reads_its_own(
    flow_service_conn: FlowServiceEmulator, reads: list[str], clock: Clock
) -> None:
    run_id = a_run(flow_service_conn)

    async def poll_twice() -> Any:
        async with FlowServiceAsyncHook(retry=FAST) as one, FlowServiceAsyncHook(retry=FAST) as two:
            await one.get_run(run_id)
            await two.get_run(run_id)
            assert one._state is two._state
            return one._state

    first = asyncio.run(poll_twice())
    second = asyncio.run(poll_twice())
    assert first is not second
    assert reads == ["flow_service_default"] * 2
