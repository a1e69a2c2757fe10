"""One CA story (docs/connection.md "TLS"): both paths honour REQUESTS_CA_BUNDLE / SSL_CERT_FILE, and
``verify_tls=false`` never turns verification off for IMS, where the client secret is sent.

A real HTTPS server on 127.0.0.1 with a fresh self-signed certificate (``serve_tls``) answers IMS
with a token and Flow Service with a run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_flowservice._retry import RetryPolicy
from airflow_provider_flowservice.exceptions import FlowServiceApiError
from airflow_provider_flowservice.hooks.flow_service import FlowServiceAsyncHook, FlowServiceHook
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator
from tests.reliability._support import serve_tls

pytestmark = pytest.mark.timeout(60)

FAST = RetryPolicy(max_attempts=1, initial_backoff=0.01, max_backoff=0.01, max_total_seconds=5)
RUN = {"items": [{"id": "run-1", "flowId": "f", "metrics": {"statusSummary": {"status": "inProgress"}}}]}


class _Api(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hits: list[str]

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.hits.append(f"{self.command} {self.path}")  # type: ignore[attr-defined]
        body = {"access_token": "tok-1", "expires_in": 3600} if self.command == "POST" else RUN
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def https(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    server.daemon_threads = True
    server.hits = []  # type: ignore[attr-defined]
    cert = serve_tls(server, tmp_path)
    yield f"https://127.0.0.1:{server.server_address[1]}", cert, server.hits  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def _poll_async(conn: str) -> str:
    async def poll() -> str:
        async with FlowServiceAsyncHook(conn, retry=FAST) as hook:
            return (await hook.get_run("run-1")).id

    return asyncio.run(poll())


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"])
def test_both_paths_trust_the_ca_bundle_the_environment_names(
    emu: FlowServiceEmulator,
    define_conn: Callable[..., str],
    https: tuple[str, Path, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    base, cert, hits = https
    conn = define_conn(f"aep_env_ca_{variable.lower()}", host=base, ims_url=base + "/ims/token/v3")
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(FlowServiceApiError, match="verify_tls"):  # control: untrusted without it
        _poll_async(conn)
    assert hits == []
    monkeypatch.setenv(variable, str(cert))
    assert FlowServiceHook(conn, retry=FAST).get_run("run-1").id == "run-1"
    assert _poll_async(conn) == "run-1"  # the deferrable path trusts it too
    assert hits.count("POST /ims/token/v3") == 1  # one token, shared by both paths


@pytest.mark.parametrize("path", ["sync", "async"])
def test_verify_tls_false_keeps_ims_verified(
    emu: FlowServiceEmulator,
    define_conn: Callable[..., str],
    https: tuple[str, Path, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    base, cert, hits = https
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    conn = define_conn(
        f"aep_noverify_{path}", host=base, ims_url=base + "/ims/token/v3", verify_tls=False
    )
    with pytest.raises(FlowServiceApiError) as info:
        if path == "sync":
            FlowServiceHook(conn, retry=FAST).get_run("run-1")
        else:
            _poll_async(conn)
    assert "Adobe IMS" in str(info.value) and "verify_tls" in str(info.value)
    assert hits == []  # the secret never went to an unverified IMS
    # the API itself is unverified as asked: with a trusted IMS (the CA given) the poll goes through
    trusted_ims = define_conn(
        f"aep_noverify_api_{path}", host=base, ims_url=base + "/ims/token/v3", verify_tls=str(cert)
    )
    assert FlowServiceHook(trusted_ims, retry=FAST).get_run("run-1").id == "run-1"
