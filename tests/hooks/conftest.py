"""Fixtures of the hook tests: a clean process-wide token cache, tiny retry waits, an echoing server."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote_plus

import pytest

from airflow_provider_flowservice._auth import TOKEN_CACHE
from airflow_provider_flowservice._retry import RetryPolicy
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator

FAST = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05, max_total_seconds=20.0)
"""Retry policy with waits of milliseconds, so fault tests stay fast."""


@pytest.fixture(autouse=True)
def _clean_token_cache() -> Iterator[None]:
    """No test sees a token another test left behind (emulator ports get reused)."""
    TOKEN_CACHE.clear()
    yield
    TOKEN_CACHE.clear()


@pytest.fixture
def set_conn(
    flow_service_emulator: FlowServiceEmulator, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., str]:
    """Define a connection (default id unless ``conn_id``) on the emulator, with extra overrides."""

    def define(conn_id: str = "flow_service_default", **extra: object) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", flow_service_emulator.connection_json(**extra))
        return conn_id

    return define


class _Echo(BaseHTTPRequestHandler):
    """Answers every request with what it carried: the access token and the client secret, echoed.

    ``/runs/<status>`` answers that HTTP status with a Flow Service error body; ``/runs/notjson``
    answers 200 with HTML; ``/runs/401`` a gateway 401. A careless client would copy the echo into
    its exception message.
    """

    def do_GET(self) -> None:
        token = self.headers.get("Authorization", "").partition(" ")[2]
        secret = self.server.secret  # type: ignore[attr-defined]
        echo = f"token {token} secret {secret} form-encoded {quote_plus(secret)}"
        last = self.path.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        if last == "notjson":
            self._reply(200, f"<html>{echo}</html>", "text/html")
        elif last == "401":
            refusal = {"error_code": "401013", "message": f"Oauth token {token} is not valid"}
            self._reply(401, json.dumps(refusal))
        else:
            body = {
                "type": f"https://ns.adobe.com/aep/errors/FLOW-1999-{last}",
                "title": f"Refused Bearer {token}",
                "report": {"detailed-message": echo, "request-id": token},
            }
            self._reply(int(last), json.dumps(body))

    def _reply(self, status: int, text: str, content_type: str = "application/json") -> None:
        payload = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def echo_conn(flow_service_emulator: FlowServiceEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Connection ``aep_echo``: tokens from the emulator's IMS, API calls to an echoing server."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.secret = flow_service_emulator.client_secret  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    conn = json.loads(flow_service_emulator.connection_json())
    conn["host"] = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("AIRFLOW_CONN_AEP_ECHO", json.dumps(conn))
    yield "aep_echo"
    server.shutdown()
    server.server_close()
