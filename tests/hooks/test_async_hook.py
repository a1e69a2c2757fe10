"""FlowServiceAsyncHook over real HTTP against the emulator: same auth, cache, retries and errors."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest

from airflow_provider_flowservice._retry import RetryPolicy
from airflow_provider_flowservice.exceptions import (
    FlowServiceApiError,
    FlowServiceAuthError,
    FlowServiceRetryError,
)
from airflow_provider_flowservice.hooks._api import USER_AGENT
from airflow_provider_flowservice.hooks.flow_service import FlowServiceAsyncHook, FlowServiceHook
from airflow_provider_flowservice.status import FlowRunStatus
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator
from tests.helpers import forget_tokens
from tests.hooks.conftest import FAST

W_START, W_END = 1_651_584_991, 1_651_585_956
FS = "/data/foundation/flowservice"


def fs_requests(em: FlowServiceEmulator) -> list[Any]:
    return [r for r in em.requests if r.path.startswith(FS)]


@pytest.fixture
def em(flow_service_conn: FlowServiceEmulator) -> FlowServiceEmulator:
    return flow_service_conn


def make_run(em: FlowServiceEmulator, **flow_options: Any) -> tuple[str, str]:
    """Create a run with the sync hook; the token caches are emptied so async tests start cold."""
    flow = em.add_flow(kind="file", **flow_options)
    run_id = FlowServiceHook(retry=FAST).create_run(flow, W_START, W_END).run_id
    forget_tokens()
    em.reset_requests()
    return flow, run_id


async def test_get_run_list_runs_and_get_flow(em: FlowServiceEmulator) -> None:
    flow, run_id = make_run(em, outcome="success", polls_to_finish=1)
    async with FlowServiceAsyncHook(retry=FAST) as hook:
        first = await hook.get_run(run_id)
        second = await hook.get_run(run_id)
        runs = await hook.list_runs(flow)
        result = await hook.get_flow(flow)
    assert first.status.is_running and second.status is FlowRunStatus.SUCCESS
    assert [r.id for r in runs] == [run_id]
    assert result.id == flow
    for request in fs_requests(em):
        assert request.headers["authorization"].startswith("Bearer ey")
        assert request.headers["x-api-key"] == em.client_id
        assert request.headers["x-gw-ims-org-id"] == em.org_id
        assert request.headers["x-sandbox-name"] == em.sandbox_name
    assert {r.headers["user-agent"] for r in em.requests} == {USER_AGENT}  # IMS's request too
    assert any(r.path == "/ims/token/v3" for r in em.requests)


async def test_one_client_per_hook_reused_and_closed(em: FlowServiceEmulator) -> None:
    _, run_id = make_run(em)
    hook = FlowServiceAsyncHook(retry=FAST)
    await hook.get_run(run_id)
    session = hook._session
    await hook.get_run(run_id)
    assert hook._session is session and session is not None
    await hook.aclose()
    assert session.closed
    await hook.aclose()  # idempotent


async def test_token_is_shared_with_the_sync_hook(em: FlowServiceEmulator) -> None:
    flow, run_id = make_run(em)
    FlowServiceHook(retry=FAST).get_flow(flow)
    async with FlowServiceAsyncHook(retry=FAST) as hook:
        await hook.get_run(run_id)
    async with FlowServiceAsyncHook(retry=FAST) as hook:
        await hook.get_run(run_id)
    assert em.token_requests == 2  # one for make_run's cleared cache, one shared by all three hooks
    assert len({r.headers["authorization"] for r in fs_requests(em)}) == 1


async def test_50_concurrent_tasks_cause_one_ims_request_and_one_renewal(em: FlowServiceEmulator) -> None:
    _, run_id = make_run(em)
    before = em.token_requests
    hooks = [FlowServiceAsyncHook(retry=FAST) for _ in range(50)]
    try:
        runs = await asyncio.gather(*(h.get_run(run_id) for h in hooks))
        assert {r.id for r in runs} == {run_id}
        assert em.token_requests == before + 1
        em.revoke_tokens()
        await asyncio.gather(*(h.get_run(run_id) for h in hooks))
        assert em.token_requests == before + 2
    finally:
        await asyncio.gather(*(h.aclose() for h in hooks))


async def test_401_renews_once_second_401_is_an_auth_error(em: FlowServiceEmulator) -> None:
    _, run_id = make_run(em)
    async with FlowServiceAsyncHook(retry=FAST) as hook:
        await hook.get_run(run_id)
        em.revoke_tokens()
        assert (await hook.get_run(run_id)).id == run_id
        assert em.token_requests == 3
        em.inject("401", times=2)
        with pytest.raises(FlowServiceAuthError, match="flow_service_default"):
            await hook.get_run(run_id)
        assert em.token_requests == 4


async def test_a_cached_token_from_before_the_refusal_refused_too_earns_one_fresh_renewal(
    em: FlowServiceEmulator,
) -> None:
    # As the sync test of that name: a trigger's poll held by the server while a worker renews and
    # the tokens are revoked again must renew once more, not end the wait with an auth error.
    _, run_id = make_run(em)
    before = em.token_requests
    async with FlowServiceAsyncHook(retry=FAST) as hook:
        await hook.get_run(run_id)
        em.revoke_tokens()
        em.inject("slow", delay=2.0)
        held = asyncio.ensure_future(hook.get_run(run_id))
        for _ in range(1000):
            if any(r.fault == "slow" for r in em.requests):
                break
            await asyncio.sleep(0.01)
        renewed = await asyncio.to_thread(lambda: FlowServiceHook(retry=FAST).get_run(run_id))
        assert renewed.id == run_id
        em.revoke_tokens()
        assert not held.done(), "the held poll ended before the worker was done: the staging did not hold"
        assert (await asyncio.wait_for(held, 15)).id == run_id
    assert em.token_requests == before + 3  # T1 (the trigger), T2 (the worker), T3 (the trigger again)
    t0, a1, b1, b2, a2, a3 = [r.headers["authorization"] for r in fs_requests(em)]
    assert t0 == a1 == b1 != b2 == a2 != a3 != a1


async def test_transient_faults_are_retried_without_blocking_the_loop(
    em: FlowServiceEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, run_id = make_run(em)
    conn = json.loads(em.connection_json(read_timeout=0.3))
    monkeypatch.setenv("AIRFLOW_CONN_AEP_ASYNC", json.dumps(conn))
    for fault in ("429", "500", "502", "503", "504", "reset", "drop"):
        em.inject(fault)
    em.inject("slow", delay=1.0)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    started = time.monotonic()
    policy = RetryPolicy(max_attempts=10, initial_backoff=0.05, max_backoff=0.05, max_total_seconds=20)
    async with FlowServiceAsyncHook("aep_async", retry=policy) as hook:
        run = await hook.get_run(run_id)
    elapsed = time.monotonic() - started
    tick_task.cancel()
    assert run.id == run_id
    assert [r.fault for r in fs_requests(em)] == [
        "429",
        "500",
        "502",
        "503",
        "504",
        "reset",
        "drop",
        "slow",
        None,
    ]
    assert ticks >= elapsed / 0.01 * 0.5  # the loop kept running while the hook waited


async def test_retry_after_is_honoured(em: FlowServiceEmulator) -> None:
    _, run_id = make_run(em)
    em.inject("429", retry_after="1")
    async with FlowServiceAsyncHook(retry=RetryPolicy(max_attempts=3, initial_backoff=0.01)) as hook:
        await hook.get_run(run_id)
    first, second = fs_requests(em)
    assert second.time - first.time >= 0.9


async def test_bounded_failure_says_what_was_tried(em: FlowServiceEmulator) -> None:
    _, run_id = make_run(em)
    em.inject("503", times=5)
    policy = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.01)
    async with FlowServiceAsyncHook(retry=policy) as hook:
        with pytest.raises(FlowServiceRetryError) as info:
            await hook.get_run(run_id)
    assert f"GET /runs/{run_id}" in str(info.value) and "2 attempt(s)" in str(info.value)
    assert "HTTP 503" in str(info.value)


async def test_api_errors_are_parsed(em: FlowServiceEmulator) -> None:
    async with FlowServiceAsyncHook(retry=FAST) as hook:
        with pytest.raises(FlowServiceApiError) as info:
            await hook.get_run("no-such-run")
    assert info.value.status_code == 404 and info.value.request_id
    assert len(fs_requests(em)) == 1


async def test_static_token_async(em: FlowServiceEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    _, run_id = make_run(em)
    token = em.tokens_issued[-1]
    before = em.token_requests
    conn = json.loads(em.connection_json(access_token=token))
    conn["password"] = None
    monkeypatch.setenv("AIRFLOW_CONN_AEP_ASYNC_STATIC", json.dumps(conn))
    async with FlowServiceAsyncHook("aep_async_static", retry=FAST) as hook:
        assert (await hook.get_run(run_id)).id == run_id
        em.revoke_tokens()
        with pytest.raises(FlowServiceAuthError, match="static access_token"):
            await hook.get_run(run_id)
    assert em.token_requests == before


async def test_invalid_client_async(em: FlowServiceEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = json.loads(em.connection_json())
    conn["password"] = "bad-secret-0815"
    monkeypatch.setenv("AIRFLOW_CONN_AEP_ASYNC_BAD", json.dumps(conn))
    async with FlowServiceAsyncHook("aep_async_bad", retry=FAST) as hook:
        with pytest.raises(FlowServiceAuthError) as info:
            await hook.get_run("r")
    assert "aep_async_bad" in str(info.value) and "invalid_client" in str(info.value)
    assert "bad-secret-0815" not in str(info.value)


async def test_pagination_async(em: FlowServiceEmulator) -> None:
    em.page_size = 2
    flow = em.add_flow(kind="file")
    sync = FlowServiceHook(retry=FAST)
    ids = {sync.create_run(flow, W_START + i * 10, W_START + i * 10 + 5).run_id for i in range(5)}
    async with FlowServiceAsyncHook(retry=FAST) as hook:
        assert {r.id for r in await hook.list_runs(flow)} == ids
        assert len(await hook.list_runs(flow, limit=3)) == 3


async def test_both_hooks_stop_at_max_pages_and_say_more_runs_exist(
    em: FlowServiceEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """One paging rule (``_api.run_pages``) for both hooks: the async one used to stop silently."""
    em.page_size = 2
    flow = em.add_flow(kind="file")
    sync = FlowServiceHook(retry=FAST)
    for i in range(5):
        sync.create_run(flow, W_START + i * 10, W_START + i * 10 + 5)
    assert len(sync.list_runs(flow, max_pages=2)) == 4  # (its task logger is not caplog's on Airflow 3)
    caplog.set_level(logging.WARNING, logger="airflow_provider_flowservice.hooks.flow_service")
    async with FlowServiceAsyncHook(retry=FAST) as hook:
        assert len(await hook.list_runs(flow, max_pages=2)) == 4
        assert len(await hook.list_runs(flow, max_pages=3)) == 5  # the last page: nothing more
    ours = "airflow_provider_flowservice.hooks.flow_service"
    warned = [r.getMessage() for r in caplog.records if r.name == ours]
    assert warned == ["Stopped listing runs after 2 pages (max_pages); more exist."]


async def test_hooks_on_one_loop_share_one_aiohttp_session(em: FlowServiceEmulator) -> None:
    """A triggerer runs many triggers in one loop: one session (one connector pool) serves all."""
    _, run_id = make_run(em, outcome="success", polls_to_finish=5)
    token_requests_before = em.token_requests
    hooks = [FlowServiceAsyncHook(retry=FAST) for _ in range(50)]
    await asyncio.gather(*(h.get_run(run_id) for h in hooks))
    sessions = {id(h._session) for h in hooks}
    assert len(sessions) == 1
    shared = hooks[0]._session
    assert shared is not None
    assert shared.connector is not None and shared.connector.limit == 100
    for h in hooks[:-1]:
        await h.aclose()
    assert not shared.closed  # still used by the last hook
    await hooks[-1].aclose()
    assert shared.closed
    assert em.token_requests - token_requests_before == 1


@pytest.mark.parametrize(
    ("path", "error"),
    [("400", FlowServiceApiError), ("503", FlowServiceRetryError), ("401", FlowServiceAuthError)],
)
async def test_async_error_messages_never_repeat_an_echoed_token_or_secret(
    flow_service_emulator: FlowServiceEmulator, echo_conn: str, path: str, error: type[Exception]
) -> None:
    from urllib.parse import quote_plus

    em = flow_service_emulator
    hook = FlowServiceAsyncHook(echo_conn, retry=RetryPolicy(max_attempts=2, initial_backoff=0.01))
    try:
        with pytest.raises(error) as caught:
            await hook.get_run(path)
    finally:
        await hook.aclose()
    secrets = [em.client_secret, quote_plus(em.client_secret), *em.tokens_issued]
    assert em.tokens_issued
    message = str(caught.value)
    assert [s for s in secrets if s in message] == [] and "***" in message
