"""The aiohttp session the async hooks share: one per loop, bounded pool, proxy-aware, CA-aware."""

from __future__ import annotations

import asyncio
import http.client
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from airflow_provider_flowservice.hooks import _session
from airflow_provider_flowservice.hooks._session import env_proxy
from airflow_provider_flowservice.hooks.flow_service import FlowServiceAsyncHook
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator
from tests.hooks.conftest import FAST
from tests.hooks.test_async_hook import make_run

FS = "/data/foundation/flowservice"
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
ADOBE = "https://platform.adobe.io"
PROXY = "http://proxy:3128"


@pytest.fixture
def em(flow_service_conn: FlowServiceEmulator) -> FlowServiceEmulator:
    return flow_service_conn


@pytest.fixture
def no_env_proxy(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


async def test_one_session_per_loop_with_a_bounded_pool(em: FlowServiceEmulator) -> None:
    _, run_id = make_run(em, polls_to_finish=1000)
    hooks = [FlowServiceAsyncHook(retry=FAST) for _ in range(300)]
    try:
        await asyncio.gather(*(h.get_run(run_id) for h in hooks))
        sessions = {id(h._session) for h in hooks}
        assert len(sessions) == 1
        connector = hooks[0]._session.connector  # type: ignore[union-attr]
        assert connector is not None and connector.limit == _session.MAX_CONNECTIONS
    finally:
        await asyncio.gather(*(h.aclose() for h in hooks))
    assert hooks[0]._session is None


def test_each_loop_gets_its_own_session(em: FlowServiceEmulator) -> None:
    _, run_id = make_run(em)

    async def poll() -> int:
        async with FlowServiceAsyncHook(retry=FAST) as hook:
            await hook.get_run(run_id)
            return id(hook._session)

    assert asyncio.run(poll()) and asyncio.run(poll())  # a closed loop's session does not leak into the next


async def test_verification_on_by_default_with_the_one_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    import certifi

    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    context = await _session.ssl_for(certifi.where())
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname is True
    assert await _session.ssl_for(certifi.where()) is context  # built once per process
    assert await _session.ssl_for(False) is False


@pytest.mark.parametrize(
    ("env", "url", "expected"),
    [
        ({}, ADOBE, None),
        ({"HTTPS_PROXY": PROXY}, ADOBE, PROXY),
        ({"https_proxy": PROXY}, "http://platform.adobe.io", None),
        ({"ALL_PROXY": "http://all:1"}, "http://127.0.0.1:8080", "http://all:1"),
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": "platform.adobe.io"}, ADOBE, None),
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": ".adobe.io"}, ADOBE, None),
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": "example.com"}, ADOBE, PROXY),
    ],
)
def test_env_proxy_reads_the_environment_like_requests(
    no_env_proxy: pytest.MonkeyPatch, env: dict[str, str], url: str, expected: str | None
) -> None:
    for name, value in env.items():
        no_env_proxy.setenv(name, value)
    assert env_proxy(url) == expected


class _ForwardProxy(ThreadingHTTPServer):
    """A plain HTTP forward proxy on 127.0.0.1 that records what went through it."""

    daemon_threads = True

    def __init__(self) -> None:
        self.seen: list[str] = []
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ForwardProxy

    def _forward(self) -> None:
        target = urlsplit(self.path)  # absolute form: http://host:port/path?query
        self.server.seen.append(f"{self.command} {target.path}")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        conn = http.client.HTTPConnection(target.netloc, timeout=10)
        path = target.path + (f"?{target.query}" if target.query else "")
        conn.request(self.command, path, body=body or None, headers=dict(self.headers))
        answer = conn.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_POST = _forward

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def forward_proxy() -> Iterator[_ForwardProxy]:
    proxy = _ForwardProxy()
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


async def test_the_hook_goes_through_the_proxy_the_environment_names(
    em: FlowServiceEmulator, no_env_proxy: pytest.MonkeyPatch, forward_proxy: _ForwardProxy
) -> None:
    _, run_id = make_run(em)
    no_env_proxy.setenv("HTTP_PROXY", forward_proxy.url)
    async with FlowServiceAsyncHook(retry=FAST) as hook:
        run = await hook.get_run(run_id)
    assert run.id == run_id
    assert "POST /ims/token/v3" in forward_proxy.seen  # the token request
    assert f"GET {FS}/runs/{run_id}" in forward_proxy.seen  # the poll
