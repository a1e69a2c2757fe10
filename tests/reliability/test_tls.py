"""A TLS failure is permanent: the hooks, the trigger and ``is_transient`` give up at once.

Two real failures on 127.0.0.1: ``https://`` to the emulator's plain-HTTP port (the server does
not speak TLS) and a server with a self-signed certificate (verification fails). Retrying cannot
fix either, so nothing may poll one until its deadline. The retry policy here would take minutes
to run out: every assertion that the failure came promptly has teeth.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from airflow_provider_flowservice._retry import RetryPolicy, is_transient
from airflow_provider_flowservice.exceptions import FlowServiceApiError, FlowServiceRetryError
from airflow_provider_flowservice.hooks.flow_service import FlowServiceAsyncHook, FlowServiceHook
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator
from airflow_provider_flowservice.triggers.flow_service import FlowServiceRunTrigger
from tests.reliability._support import JAN1, JAN2, run_trigger

pytestmark = pytest.mark.timeout(60)

SLOW = RetryPolicy(max_attempts=8, initial_backoff=20.0, max_backoff=30.0, max_total_seconds=300.0)
"""Retries that would last minutes (the first waits >= 10 s): a prompt failure was not retried."""
PROMPT = 8.0
RUN_ID = "6a1b2c3d-0000-4000-8000-000000000001"
FLOW_ID = "3abea21c-7e36-4be1-bec1-d3bad0e3e0de"


@pytest.fixture(params=["plain-http-port", "self-signed"])
def tls_broken(
    request: pytest.FixtureRequest, emu: FlowServiceEmulator, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], str]:
    """Point ``flow_service_default`` at a TLS endpoint that fails; IMS stays on the emulator."""
    if request.param == "plain-http-port":
        host = emu.url.replace("http://", "https://")
    else:
        host = request.getfixturevalue("self_signed_url")
    conn = json.loads(emu.connection_json(read_timeout=2, connect_timeout=2))
    conn["host"] = host
    monkeypatch.setenv("AIRFLOW_CONN_FLOW_SERVICE_DEFAULT", json.dumps(conn))
    return lambda: str(request.param)


def _check(exc: BaseException, kind: str) -> None:
    assert isinstance(exc, FlowServiceApiError) and not isinstance(exc, FlowServiceRetryError), exc
    assert exc.status_code is None
    assert not is_transient(exc)
    message = str(exc)
    if kind == "self-signed":
        assert "CERTIFICATE_VERIFY_FAILED" in message.upper() and "verify_tls" in message
    else:
        assert "does not speak TLS" in message and "scheme and port" in message


def test_sync_hook_fails_at_once(tls_broken: Callable[[], str]) -> None:
    hook = FlowServiceHook(retry=SLOW)
    started = time.monotonic()
    with pytest.raises(FlowServiceApiError) as caught:
        hook.get_run(RUN_ID)
    assert time.monotonic() - started < PROMPT
    _check(caught.value, tls_broken())


def test_sync_create_fails_at_once_without_a_second_post(tls_broken: Callable[[], str]) -> None:
    started = time.monotonic()
    with pytest.raises(FlowServiceApiError) as caught:
        FlowServiceHook(retry=SLOW).create_run(FLOW_ID, JAN1, JAN2)
    assert time.monotonic() - started < PROMPT
    _check(caught.value, tls_broken())


async def test_async_hook_fails_at_once(tls_broken: Callable[[], str]) -> None:
    hook = FlowServiceAsyncHook(retry=SLOW)
    started = time.monotonic()
    try:
        with pytest.raises(FlowServiceApiError) as caught:
            await hook.get_run(RUN_ID)
    finally:
        await hook.aclose()
    assert time.monotonic() - started < PROMPT
    _check(caught.value, tls_broken())


def test_trigger_ends_with_an_error_event_instead_of_polling_to_its_deadline(
    tls_broken: Callable[[], str],
) -> None:
    trigger = FlowServiceRunTrigger(
        RUN_ID, poll_interval=0.05, end_time=time.time() + 120, retry=SLOW.to_dict(), flow_id=FLOW_ID
    )
    started = time.monotonic()
    events = run_trigger(trigger, limit=30)
    assert time.monotonic() - started < PROMPT
    assert [e.payload["status"] for e in events] == ["error"]
    assert "TLS" in events[0].payload["message"] or "verify_tls" in events[0].payload["message"]


def test_ims_over_broken_tls_fails_at_once(emu: FlowServiceEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = json.loads(emu.connection_json(read_timeout=2, connect_timeout=2))
    conn["extra"]["ims_url"] = emu.url.replace("http://", "https://") + "/ims/token/v3"
    monkeypatch.setenv("AIRFLOW_CONN_FLOW_SERVICE_DEFAULT", json.dumps(conn))
    started = time.monotonic()
    with pytest.raises(FlowServiceApiError) as caught:
        FlowServiceHook(retry=SLOW).get_run(RUN_ID)
    assert time.monotonic() - started < PROMPT
    assert caught.value.status_code is None and not is_transient(caught.value)
    assert "Adobe IMS" in str(caught.value) and "verify_tls" in str(caught.value)
