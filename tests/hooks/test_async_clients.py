"""The lanes the async hooks share: bounded, reused, freed without the cyclic GC, proxy-aware."""

from __future__ import annotations

import asyncio
import gc
import http.client
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from airflow_provider_flowservice.hooks._async_clients import SharedClients, env_proxy
from airflow_provider_flowservice.hooks.flow_service import FlowServiceAsyncHook
from airflow_provider_flowservice.retry import transient_from_httpx
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


def headers_for(em: FlowServiceEmulator) -> dict[str, str]:
    form = {"grant_type": "client_credentials", "client_id": em.client_id, "client_secret": em.client_secret}
    token = httpx.post(em.ims_token_url, data=form, timeout=10).json()["access_token"]
    return {
        "Authorization": f"Bearer {token}",
        "x-api-key": em.client_id,
        "x-gw-ims-org-id": em.org_id,
        "x-sandbox-name": em.sandbox_name,
    }


def shared_clients(lanes: int, pool_timeout: float = 5.0) -> SharedClients:
    return SharedClients(httpx.create_ssl_context(), httpx.Timeout(10.0, pool=pool_timeout), lanes=lanes)


async def test_concurrent_requests_never_use_more_lanes_than_allowed(em: FlowServiceEmulator) -> None:
    _, run_id = make_run(em)
    headers = headers_for(em)
    em.inject("slow", path=f"/runs/{run_id}", delay=0.05, times=20)
    shared = shared_clients(lanes=3)
    try:
        url = f"{em.url}{FS}/runs/{run_id}"
        answers = await asyncio.gather(*(shared.request("GET", url, headers=headers) for _ in range(20)))
        assert [a.status_code for a in answers] == [200] * 20
        assert all(a.json()["items"][0]["id"] == run_id for a in answers)
        assert len(shared._lanes) == 3
    finally:
        await shared.aclose()


async def test_one_request_at_a_time_reuses_one_lane(em: FlowServiceEmulator) -> None:
    _, run_id = make_run(em)
    headers = headers_for(em)
    shared = shared_clients(lanes=10)
    try:
        for _ in range(5):
            answer = await shared.request("GET", f"{em.url}{FS}/runs/{run_id}", headers=headers)
            assert answer.status_code == 200 and answer.request.method == "GET"
        assert len(shared._lanes) == 1
    finally:
        await shared.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await shared.request("GET", f"{em.url}{FS}/runs/{run_id}", headers=headers)


async def test_no_free_lane_within_the_pool_timeout_is_transient(em: FlowServiceEmulator) -> None:
    _, run_id = make_run(em)
    headers = headers_for(em)
    em.inject("slow", path=f"/runs/{run_id}", delay=1.0, times=1)
    shared = shared_clients(lanes=1, pool_timeout=0.1)
    url = f"{em.url}{FS}/runs/{run_id}"
    try:
        slow = asyncio.ensure_future(shared.request("GET", url, headers=headers))
        await asyncio.sleep(0.05)  # the slow request holds the only lane
        started = time.monotonic()
        with pytest.raises(httpx.PoolTimeout, match="busy") as info:
            await shared.request("GET", url, headers=headers)
        assert time.monotonic() - started < 0.8
        failure = transient_from_httpx(info.value)
        assert failure is not None and failure.maybe_processed is False  # safe to send again
        assert (await slow).status_code == 200
        assert (await shared.request("GET", url, headers=headers)).status_code == 200  # lane given back
    finally:
        await shared.aclose()


async def test_polls_leave_no_garbage_for_the_cyclic_collector(em: FlowServiceEmulator) -> None:
    """Full GC passes stall a loop of 1000 triggers: a poll's objects must go by reference counting."""
    _, run_id = make_run(em)
    async with FlowServiceAsyncHook(retry=FAST) as hook:
        await hook.get_run(run_id)  # token, client and connection set up
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(20):
                await hook.get_run(run_id)
            gc.collect()
            ours = [
                o for o in gc.garbage
                if type(o).__module__.startswith(("httpx", "httpcore", "h11", "airflow_provider_flowservice"))
            ]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert ours == []


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
    assert "POST /ims/token/v3" in forward_proxy.seen  # the token client: httpx's own proxy handling
    assert f"GET {FS}/runs/{run_id}" in forward_proxy.seen  # the lanes
