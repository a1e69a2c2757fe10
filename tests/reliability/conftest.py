"""Fixtures of the reliability suite: an emulator with a distinctive client secret, set as the
default connection with short timeouts, a clean process-wide token cache per test, and an HTTPS
server whose certificate nobody trusts."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_flowservice._auth import TOKEN_CACHE
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator
from tests.reliability._support import serve_tls, start_dag_run

SECRET = f"s3cr3t-{uuid.uuid4()}"
"""The client secret of every emulator here: distinctive, so a grep for it cannot match by chance."""

READ_TIMEOUT = 0.5
"""The default connection's read timeout: a lost answer costs half a second, not a minute."""


@pytest.fixture(autouse=True)
def _clean_token_cache() -> Iterator[None]:
    """No test sees a token another one left (emulator ports get reused)."""
    TOKEN_CACHE.clear()
    yield
    TOKEN_CACHE.clear()


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[FlowServiceEmulator]:
    """A running emulator (secret :data:`SECRET`) as ``flow_service_default``."""
    with FlowServiceEmulator(client_secret=SECRET, polls_to_finish=1) as emulator:
        monkeypatch.setenv(
            "AIRFLOW_CONN_FLOW_SERVICE_DEFAULT",
            emulator.connection_json(read_timeout=READ_TIMEOUT, connect_timeout=2),
        )
        yield emulator


@pytest.fixture
def define_conn(emu: FlowServiceEmulator, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Define another connection on the emulator: ``define_conn(conn_id, login=..., **extra)``.

    ``login``/``password``/``host`` replace the connection fields (``None`` removes one); any other
    keyword overrides an extra field (``None`` removes it).
    """
    import json

    def define(conn_id: str, **fields: object) -> str:
        conn = json.loads(emu.connection_json(read_timeout=READ_TIMEOUT, connect_timeout=2))
        for name in ("login", "password", "host"):
            if name in fields:
                conn[name] = fields.pop(name)
        for key, value in fields.items():
            if value is None:
                conn["extra"].pop(key, None)
            else:
                conn["extra"][key] = value
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return define


class _Quiet(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


class _TLSServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client refusing our certificate is the point


@pytest.fixture
def self_signed_url(tmp_path: Path) -> Iterator[str]:
    """``https://127.0.0.1:PORT`` served with a certificate no CA signed."""
    server = _TLSServer(("127.0.0.1", 0), _Quiet)
    serve_tls(server, tmp_path)
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _dag_run_started() -> None:
    """Each test is one DAG run that starts when the test does (the reuse rule reads its start date)."""
    start_dag_run()

