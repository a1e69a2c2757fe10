"""One redaction rule for every message built from a response: IMS and Flow Service, sync and async.

A server that echoes what it was sent (as real gateways and IMS error pages do) shows the client
secret URL-encoded (``client_secret=p8e-ab%2Bc%2F...``), JSON-escaped, or raw. None of those forms
may reach an exception message.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from airflow_provider_flowservice._errors import redact, secret_forms
from airflow_provider_flowservice._retry import RetryPolicy
from airflow_provider_flowservice.exceptions import FlowServiceError
from airflow_provider_flowservice.hooks.flow_service import FlowServiceAsyncHook, FlowServiceHook
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator

pytestmark = pytest.mark.timeout(60)

ODD_SECRET = 'p8e-ab+c/d=e&f"g\\h-Z9'
"""Characters that every encoding changes: ``+ / = & " \\``."""
FAST = RetryPolicy(max_attempts=1, initial_backoff=0.01, max_backoff=0.01, max_total_seconds=5)


def _echoes(body: str) -> list[tuple[str, str, str]]:
    """(content type, body) pairs that echo the request body in each form a server might use."""
    lower_hex = quote_plus(ODD_SECRET).replace("%2B", "%2b").replace("%2F", "%2f")
    return [
        (
            "form echo, JSON",
            "application/json",
            json.dumps({"error": "invalid_client", "error_description": f"bad request: {body}"}),
        ),
        (
            "form echo, lowercase hex, text",
            "text/plain",
            f"rejected {body.replace(quote_plus(ODD_SECRET), lower_hex)}",
        ),
        (
            "JSON-escaped secret in raw text",
            "text/plain",
            'rejected {"client_secret": ' + json.dumps(ODD_SECRET) + "}",
        ),
        (
            "raw secret, JSON",
            "application/json",
            json.dumps({"error": "invalid_client", "error_description": ODD_SECRET}),
        ),
        ("path-style quoting", "text/plain", f"rejected /x/{quote(ODD_SECRET)}"),
    ]


class _Echo(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _EchoHandler)
        self.answer: Callable[[str], tuple[str, str]] = lambda body: ("text/plain", body)
        self.bodies: list[str] = []


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Echo

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self.server.bodies.append(body)
        content_type, text = self.server.answer(body)
        payload = text.encode()
        self.send_response(401)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[_Echo]:
    server = _Echo()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("case", range(5))
@pytest.mark.parametrize("path", ["sync", "async"])
def test_ims_errors_never_show_the_secret_in_any_encoding(
    emu: FlowServiceEmulator, define_conn: Callable[..., str], echo: _Echo, case: int, path: str
) -> None:
    conn = define_conn(
        f"aep_echo_{path}_{case}",
        password=ODD_SECRET,
        ims_url=f"http://127.0.0.1:{echo.server_address[1]}/ims/token/v3",
    )
    name: list[str] = []

    def answer(body: str) -> tuple[str, str]:
        label, content_type, text = _echoes(body)[case]
        name.append(label)
        return content_type, text

    echo.answer = answer
    if path == "sync":
        with pytest.raises(FlowServiceError) as info:
            FlowServiceHook(conn, retry=FAST).get_run("some-run")
    else:

        async def poll() -> None:
            async with FlowServiceAsyncHook(conn, retry=FAST) as hook:
                await hook.get_run("some-run")

        with pytest.raises(FlowServiceError) as info:
            asyncio.run(poll())
    # the echo really contained the secret URL-encoded: the check has teeth
    assert quote_plus(ODD_SECRET) in echo.bodies[0]
    message = str(info.value)
    assert "Adobe IMS" in message, message
    for form in secret_forms(ODD_SECRET):
        assert form.lower() not in message.lower(), (name, form, message)
    assert "***" in message, (name, message)


def test_redact_covers_every_form_of_every_secret() -> None:
    token = "eyJ.a/b+c=="
    text = " ".join(
        [*secret_forms(ODD_SECRET), *secret_forms(token), quote_plus(ODD_SECRET).lower(), "keep-me"]
    )
    out = redact(text, [ODD_SECRET, None, token])
    assert out.split() == ["***"] * (len(out.split()) - 1) + ["keep-me"]
    assert redact("nothing secret", []) == "nothing secret"
