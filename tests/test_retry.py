"""RetryPolicy and the retry loop: bounded, Retry-After aware, classification of real network errors."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from email.utils import formatdate

import httpx
import pytest
import requests

from airflow_provider_flowservice.exceptions import FlowServiceConfigError, FlowServiceRetryError
from airflow_provider_flowservice.retry import (
    RetryPolicy,
    TransientFailure,
    acall_with_retry,
    call_with_retry,
    parse_retry_after,
    transient_from_httpx,
    transient_from_requests,
    transient_from_status,
)

TINY = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.02, max_total_seconds=5)


def test_defaults_and_json_round_trip() -> None:
    policy = RetryPolicy()
    assert policy.to_dict() == {
        "max_attempts": 6,
        "initial_backoff": 1.0,
        "max_backoff": 30.0,
        "max_total_seconds": 300.0,
    }
    assert RetryPolicy.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY
    assert RetryPolicy.from_dict(None) == RetryPolicy() == RetryPolicy.from_dict({})
    assert RetryPolicy.from_dict({"max_attempts": 2}) == RetryPolicy(max_attempts=2)
    assert RetryPolicy.coerce(TINY) is TINY
    assert RetryPolicy.coerce({"max_backoff": 1}) == RetryPolicy(max_backoff=1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": 1.5},
        {"max_attempts": True},
        {"initial_backoff": -1},
        {"max_backoff": "3"},
        {"max_total_seconds": -0.1},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(FlowServiceConfigError, match=next(iter(kwargs))):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_unknown_keys_and_types_are_refused() -> None:
    with pytest.raises(FlowServiceConfigError, match="max_attempt"):
        RetryPolicy.from_dict({"max_attempt": 3})
    with pytest.raises(FlowServiceConfigError, match="RetryPolicy"):
        RetryPolicy.coerce(3)  # type: ignore[arg-type]


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(initial_backoff=1, max_backoff=8)
    for attempt, base in [(1, 1), (2, 2), (3, 4), (4, 8), (9, 8)]:
        waits = {policy.backoff(attempt) for _ in range(50)}
        assert all(base / 2 <= w <= base for w in waits)
        assert len(waits) > 1  # jittered


def test_parse_retry_after() -> None:
    now = time.time()
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("-3") == 0.0
    date = parse_retry_after(formatdate(now + 30, usegmt=True), now=now)
    assert date is not None and 28 <= date <= 30
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0
    for bad in (None, "", "soon", "Mon, 99 Foo"):
        assert parse_retry_after(bad) is None


def test_status_classification() -> None:
    for status in (429, 500, 502, 503, 504):
        failure = transient_from_status(status, {"Retry-After": "2"})
        assert failure is not None and failure.retry_after == 2.0 and failure.status_code == status
        assert failure.maybe_processed is (status != 429)
        assert failure.still_processing is (status == 504)
    for status in (400, 401, 403, 404, 409, 501):
        assert transient_from_status(status, {}) is None


def test_success_after_transient_failures() -> None:
    calls: list[float] = []

    def attempt() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise TransientFailure("HTTP 503", status_code=503)
        return "ok"

    assert call_with_retry(TINY, attempt, method="GET", path="/runs") == "ok"
    assert len(calls) == 3


def test_non_transient_errors_are_not_retried() -> None:
    calls = 0

    def attempt() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bad request")

    with pytest.raises(ValueError):
        call_with_retry(TINY, attempt, method="GET", path="/runs")
    assert calls == 1


def test_final_failure_says_what_was_tried() -> None:
    def attempt() -> None:
        raise TransientFailure("HTTP 503 1103-503 Service Unavailable", status_code=503)

    with pytest.raises(FlowServiceRetryError) as info:
        call_with_retry(TINY, attempt, method="POST", path="/runs")
    message = str(info.value)
    assert message.startswith("Flow Service POST /runs still failing after 4 attempt(s) in ")
    assert "max_attempts=4" in message and "last error: HTTP 503 1103-503" in message
    assert info.value.status_code == 503 and info.value.method == "POST"


def test_retry_after_is_used_and_capped_by_max_backoff() -> None:
    calls: list[float] = []

    def attempt() -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise TransientFailure("429", status_code=429, retry_after=0.3)
        if len(calls) == 2:
            raise TransientFailure("429", status_code=429, retry_after=100)
        return "ok"

    policy = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.5, max_total_seconds=10)
    call_with_retry(policy, attempt, method="GET", path="/runs")
    assert 0.28 <= calls[1] - calls[0] < 0.45
    assert 0.45 <= calls[2] - calls[1] < 0.7


def test_total_budget_bounds_the_wait() -> None:
    calls: list[float] = []

    def attempt() -> None:
        calls.append(time.monotonic())
        raise TransientFailure("429", status_code=429, retry_after=100)

    policy = RetryPolicy(max_attempts=100, initial_backoff=0.01, max_backoff=100, max_total_seconds=0.4)
    started = time.monotonic()
    with pytest.raises(FlowServiceRetryError):
        call_with_retry(policy, attempt, method="GET", path="/runs")
    assert time.monotonic() - started < 1.0
    assert len(calls) == 2  # one try, a wait capped at the budget, one last try


async def test_async_retry_uses_asyncio_sleep() -> None:
    calls = 0
    ticks = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise TransientFailure("reset", status_code=None)
        return "ok"

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.1, max_backoff=0.1)
    assert await acall_with_retry(policy, attempt, method="GET", path="/runs/1") == "ok"
    task.cancel()
    assert ticks >= 5  # the loop ran during the waits


async def test_async_final_failure() -> None:
    async def attempt() -> None:
        raise TransientFailure("read timeout")

    with pytest.raises(FlowServiceRetryError, match="GET /runs/1 still failing after 4 attempt"):
        await acall_with_retry(TINY, attempt, method="GET", path="/runs/1")


async def test_async_retry_after_a_first_failure_is_the_same_as_without_the_fast_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first attempt runs without tenacity; its failure still counts as attempt 1 everywhere."""
    calls = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TransientFailure("HTTP 503", status_code=503, retry_after=0.05)
        return "ok"

    caplog.set_level("WARNING", logger="airflow_provider_flowservice.retry")
    started = time.monotonic()
    assert await acall_with_retry(TINY, attempt, method="GET", path="/runs/1") == "ok"
    assert calls == 2
    assert time.monotonic() - started >= 0.015  # waited (Retry-After, capped by max_backoff 0.02)
    assert "GET /runs/1 attempt 1/4 failed (HTTP 503); retrying in 0.02 s" in caplog.text


async def test_async_first_attempt_counts_toward_the_time_budget() -> None:
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.3)
        raise TransientFailure("read timeout")

    policy = RetryPolicy(max_attempts=10, initial_backoff=0.01, max_backoff=0.01, max_total_seconds=0.35)
    with pytest.raises(FlowServiceRetryError, match="after 2 attempt"):
        await acall_with_retry(policy, attempt, method="GET", path="/runs/1")
    assert calls == 2  # 0.3 s + a wait + 0.3 s: the budget of 0.35 s is spent (a third would start late)


async def test_async_single_attempt_policy_gives_up_at_once() -> None:
    async def attempt() -> None:
        raise TransientFailure("HTTP 502", status_code=502)

    one = RetryPolicy(max_attempts=1, initial_backoff=5, max_backoff=5, max_total_seconds=60)
    started = time.monotonic()
    with pytest.raises(FlowServiceRetryError, match="after 1 attempt") as info:
        await acall_with_retry(one, attempt, method="GET", path="/runs/1")
    assert time.monotonic() - started < 1 and info.value.status_code == 502


# ---------------------------------------------------------------- real network errors


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Silent:
    """A TCP server on 127.0.0.1 that accepts, reads the request, then stays silent or closes."""

    def __init__(self, mode: str) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.mode = mode
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.recv(65536)
            if self.mode == "close":
                conn.close()
            else:
                self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


def test_requests_errors_are_classified() -> None:
    with pytest.raises(requests.ConnectionError) as refused:
        requests.get(f"http://127.0.0.1:{_closed_port()}/", timeout=2)
    failure = transient_from_requests(refused.value)
    assert failure is not None and failure.maybe_processed is False

    silent = _Silent("silent")
    try:
        with pytest.raises(requests.ReadTimeout) as timeout:
            requests.post(f"http://127.0.0.1:{silent.port}/", json={}, timeout=(2, 0.2))
    finally:
        silent.close()
    failure = transient_from_requests(timeout.value)
    assert failure is not None and failure.maybe_processed and failure.still_processing
    assert failure.description.startswith("read timeout")

    closer = _Silent("close")
    try:
        with pytest.raises(requests.ConnectionError) as dropped:
            requests.post(f"http://127.0.0.1:{closer.port}/", json={}, timeout=2)
    finally:
        closer.close()
    failure = transient_from_requests(dropped.value)
    assert failure is not None and failure.maybe_processed and not failure.still_processing

    assert transient_from_requests(requests.exceptions.InvalidURL("x")) is None
    assert transient_from_requests(requests.exceptions.SSLError("CERTIFICATE_VERIFY_FAILED")) is None


async def test_httpx_errors_are_classified() -> None:
    async with httpx.AsyncClient(timeout=httpx.Timeout(0.2, connect=2)) as client:
        with pytest.raises(httpx.ConnectError) as refused:
            await client.get(f"http://127.0.0.1:{_closed_port()}/")
        failure = transient_from_httpx(refused.value)
        assert failure is not None and failure.maybe_processed is False

        silent = _Silent("silent")
        try:
            with pytest.raises(httpx.ReadTimeout) as timeout:
                await client.post(f"http://127.0.0.1:{silent.port}/", json={})
        finally:
            silent.close()
        failure = transient_from_httpx(timeout.value)
        assert failure is not None and failure.maybe_processed and failure.still_processing

        closer = _Silent("close")
        try:
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)) as dropped:  # timing decides
                await client.post(f"http://127.0.0.1:{closer.port}/", json={})
        finally:
            closer.close()
        failure = transient_from_httpx(dropped.value)
        assert failure is not None and failure.maybe_processed and not failure.still_processing

    assert transient_from_httpx(httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]")) is None
    assert transient_from_httpx(httpx.UnsupportedProtocol("ftp")) is None
