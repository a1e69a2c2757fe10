"""RetryPolicy and the retry loop: bounded, Retry-After aware, classification of real network errors."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import aiohttp
import pytest
import requests

from airflow_provider_flowservice._retry import (
    RetryPolicy,
    TransientFailure,
    acall_with_retry,
    call_with_retry,
    is_tls_failure,
    is_transient,
    parse_retry_after,
    transient_from_aiohttp,
    transient_from_requests,
    transient_from_status,
)
from airflow_provider_flowservice.exceptions import (
    FlowServiceApiError,
    FlowServiceAuthError,
    FlowServiceConfigError,
    FlowServiceRetryError,
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


def test_retry_after_is_honoured_beyond_max_backoff_when_it_fits_the_budget() -> None:
    calls: list[float] = []

    def attempt() -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise TransientFailure("429", status_code=429, retry_after=0.3)
        if len(calls) == 2:
            raise TransientFailure("HTTP 503", status_code=503)  # no Retry-After: backoff, capped
        return "ok"

    policy = RetryPolicy(max_attempts=3, initial_backoff=0.5, max_backoff=0.1, max_total_seconds=10)
    call_with_retry(policy, attempt, method="GET", path="/runs")
    assert 0.28 <= calls[1] - calls[0] < 0.45  # Retry-After 0.3 s in full, though max_backoff is 0.1 s
    assert calls[2] - calls[1] < 0.2  # the computed backoff stays capped by max_backoff


def test_retry_after_longer_than_the_budget_left_stops_at_once() -> None:
    calls: list[float] = []

    def attempt() -> str:
        calls.append(time.monotonic())
        raise TransientFailure("HTTP 429 429050", status_code=429, retry_after=5)

    policy = RetryPolicy(max_attempts=6, initial_backoff=0.01, max_backoff=0.05, max_total_seconds=2)
    started = time.monotonic()
    with pytest.raises(FlowServiceRetryError) as caught:
        call_with_retry(policy, attempt, method="GET", path="/runs")
    assert time.monotonic() - started < 0.5  # no wait at all: the wait could not fit
    assert len(calls) == 1
    message = str(caught.value)
    assert "the server asked to wait 5 s (Retry-After)" in message
    assert "max_total_seconds=2" in message and "Last error: HTTP 429 429050" in message
    assert caught.value.status_code == 429


async def test_async_retry_after_longer_than_the_budget_left_stops_at_once() -> None:
    calls = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TransientFailure("429", status_code=429, retry_after=0.2)  # fits: honoured
        raise TransientFailure("429", status_code=429, retry_after=60)  # does not fit: stop

    policy = RetryPolicy(max_attempts=6, initial_backoff=0.01, max_backoff=0.05, max_total_seconds=3)
    started = time.monotonic()
    with pytest.raises(FlowServiceRetryError, match=r"asked to wait 60 s \(Retry-After\)"):
        await acall_with_retry(policy, attempt, method="GET", path="/runs/1")
    assert calls == 2
    assert 0.18 <= time.monotonic() - started < 1.0


def test_total_budget_bounds_the_wait() -> None:
    calls: list[float] = []

    def attempt() -> None:
        calls.append(time.monotonic())
        raise TransientFailure("HTTP 503", status_code=503)

    policy = RetryPolicy(max_attempts=100, initial_backoff=100, max_backoff=100, max_total_seconds=0.4)
    started = time.monotonic()
    with pytest.raises(FlowServiceRetryError, match="still failing after 2 attempt"):
        call_with_retry(policy, attempt, method="GET", path="/runs")
    assert time.monotonic() - started < 1.0
    assert len(calls) == 2  # one try, a backoff wait capped at the budget, one last try


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

    caplog.set_level("WARNING", logger="airflow_provider_flowservice._retry")
    started = time.monotonic()
    assert await acall_with_retry(TINY, attempt, method="GET", path="/runs/1") == "ok"
    assert calls == 2
    assert time.monotonic() - started >= 0.045  # waited the whole Retry-After (beyond max_backoff 0.02)
    assert "GET /runs/1 attempt 1/4 failed (HTTP 503); retrying in 0.05 s" in caplog.text


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


async def test_aiohttp_errors_are_classified() -> None:
    timeout = aiohttp.ClientTimeout(sock_read=0.2, sock_connect=2)
    async with aiohttp.ClientSession(timeout=timeout) as client:
        with pytest.raises(aiohttp.ClientConnectorError) as refused:
            await client.get(f"http://127.0.0.1:{_closed_port()}/")
        failure = transient_from_aiohttp(refused.value)
        assert failure is not None and failure.maybe_processed is False

        silent = _Silent("silent")
        try:
            with pytest.raises(TimeoutError) as slow:
                await client.post(f"http://127.0.0.1:{silent.port}/", json={})
        finally:
            silent.close()
        failure = transient_from_aiohttp(slow.value)
        assert failure is not None and failure.maybe_processed and failure.still_processing

        closer = _Silent("close")
        try:
            with pytest.raises(aiohttp.ClientConnectionError) as dropped:
                await client.post(f"http://127.0.0.1:{closer.port}/", json={})
        finally:
            closer.close()
        failure = transient_from_aiohttp(dropped.value)
        assert failure is not None and failure.maybe_processed and not failure.still_processing

    assert transient_from_aiohttp(aiohttp.InvalidURL("ftp://x")) is None
    assert transient_from_aiohttp(ValueError("bug")) is None


# ---------------------------------------------------------------- TLS and is_transient


@pytest.fixture
def plain_http_port() -> Iterator[int]:
    """A plain-HTTP server: ``https://`` to it fails the TLS handshake (not a TLS server)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoLog)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


class _NoLog(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_tls_to_a_plain_http_server_is_permanent_for_requests(plain_http_port: int) -> None:
    with pytest.raises(requests.exceptions.SSLError) as caught:
        requests.get(f"https://127.0.0.1:{plain_http_port}/", timeout=2)
    assert is_tls_failure(caught.value)
    assert transient_from_requests(caught.value) is None
    assert not is_transient(caught.value)


async def test_tls_to_a_plain_http_server_is_permanent_for_aiohttp(plain_http_port: int) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as client:
        with pytest.raises(aiohttp.ClientError) as caught:
            await client.get(f"https://127.0.0.1:{plain_http_port}/")
    assert "CERTIFICATE" not in str(caught.value).upper()
    assert is_tls_failure(caught.value)
    assert transient_from_aiohttp(caught.value) is None
    assert not is_transient(caught.value)


async def test_a_tls_handshake_cut_short_is_transient() -> None:
    """The server accepts, then closes mid-handshake (EOF): a network fault like a reset."""
    closer = _Silent("close")
    try:
        with pytest.raises(requests.exceptions.SSLError) as sync_error:
            requests.get(f"https://127.0.0.1:{closer.port}/", timeout=2)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as client:
            with pytest.raises(aiohttp.ClientError) as async_error:
                await client.get(f"https://127.0.0.1:{closer.port}/")
    finally:
        closer.close()
    assert not is_tls_failure(sync_error.value) and transient_from_requests(sync_error.value) is not None
    assert not is_tls_failure(async_error.value) and transient_from_aiohttp(async_error.value) is not None


def _chained(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except BaseException as caught:
        return caught


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (FlowServiceRetryError("spent", status_code=None), True),
        (FlowServiceApiError("HTTP 503", status_code=503), True),
        (FlowServiceApiError("HTTP 429", status_code=429), True),
        (FlowServiceApiError("HTTP 404", status_code=404), False),
        (FlowServiceApiError("HTTP 400", status_code=400), False),
        (FlowServiceAuthError("refused", status_code=401), False),
        (FlowServiceApiError("could not be sent: SSLError ... TLS verification failed"), False),
        (FlowServiceApiError("answered without a run id: {}"), False),
        (FlowServiceApiError("gave a next-page link to 'https://evil.example.com'"), False),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), False),
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), False),
        (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), True),
        (ConnectionResetError(104, "reset"), True),
        (TimeoutError(), True),
        (aiohttp.ServerTimeoutError("slow"), True),
        (aiohttp.ServerDisconnectedError(), True),
        (aiohttp.ClientPayloadError("cut"), True),
        (_chained(aiohttp.ClientOSError("handshake"), ssl.SSLCertVerificationError(1, "verify")), False),
        (_chained(aiohttp.ClientOSError("handshake"), ssl.SSLEOFError(8, "eof")), True),
        (ValueError("bug"), False),
    ],
)
def test_is_transient(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_transport_error_of_a_tls_failure_is_permanent_and_says_what_to_fix() -> None:
    from airflow_provider_flowservice._connection import FlowServiceConnectionSettings
    from airflow_provider_flowservice.hooks._api import transport_error

    settings = FlowServiceConnectionSettings.from_fields(
        conn_id="aep", host="https://platform.adobe.io", login="id", password="pw", extra={"org_id": "O@A"}
    )
    cert_failure = _chained(aiohttp.ClientOSError("x"), ssl.SSLCertVerificationError(1, "y"))
    verify = transport_error(settings, "GET", "/runs", cert_failure)  # type: ignore[arg-type]
    not_tls = aiohttp.ClientOSError("[SSL: WRONG_VERSION_NUMBER] wrong version")
    wrong = transport_error(settings, "GET", "/runs", not_tls)
    assert not is_transient(verify) and not is_transient(wrong)
    assert "verify_tls" in str(verify)
    assert "does not speak TLS" in str(wrong) and "scheme and port" in str(wrong)
