"""The emulator's HTTP layer: parse a request, record it, apply faults and auth, route, reply."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from airflow_provider_flowservice.testing._faults import (
    AFTER_CREATE_KINDS,
    FLOW_SERVICE_PREFIX,
    SLOW_ANSWER_KIND,
    Fault,
    FaultPlan,
)
from airflow_provider_flowservice.testing._peers import parents_of, peer_pid
from airflow_provider_flowservice.testing._responses import ApiError, Reply, fail, flow_error, gateway_error

if TYPE_CHECKING:
    from airflow_provider_flowservice.testing._model import EmulatorState

log = logging.getLogger(__name__)

IMS_TOKEN_PATH = "/ims/token/v3"
MAX_BODY = 10 * 1024 * 1024
_SERVER_ERRORS = {
    "500": (500, "1101-500"),
    "502": (502, "1102-502"),
    "503": (503, "1103-503"),
    "504": (504, "1104-504"),
}


@dataclass
class RecordedRequest:
    """One request as the emulator received it.

    ``headers`` has lower-case names. ``body`` is parsed JSON, a form dict, or the raw text; ``raw``
    is always the raw text, so a test can search it. ``repr`` hides credentials, so a failing
    assertion never prints a token or a client secret.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    time: float
    fault: str | None = None
    raw: str = field(default="", repr=False)
    peer_port: int | None = None
    """The client's TCP port (one per connection: keep-alive requests share it)."""
    peer_pid: int | None = None
    """The PID of the local process that sent it, when the emulator identifies peers (else None)."""
    peer_parents: tuple[int, ...] = ()
    """That process's parent, grandparent, ... as they were when the request arrived."""

    def __repr__(self) -> str:
        return (
            f"RecordedRequest(method={self.method!r}, path={self.path!r}, query={self.query!r}, "
            f"fault={self.fault!r})"
        )


@dataclass
class Recorder:
    """Thread-safe, size-capped list of recorded requests (the oldest half goes when full)."""

    limit: int
    items: list[RecordedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, item: RecordedRequest) -> None:
        with self.lock:
            self.items.append(item)
            if len(self.items) > self.limit:
                del self.items[: len(self.items) // 2]


class EmulatorServer(ThreadingHTTPServer):
    """A threading HTTP server that can also cut its open keep-alive connections on stop."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(
        self,
        address: tuple[str, int],
        state: EmulatorState,
        faults: FaultPlan,
        recorder: Recorder,
        *,
        identify_peers: bool = False,
    ) -> None:
        self.identify_peers = identify_peers
        self.state = state
        self.faults = faults
        self.recorder = recorder
        self.stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that vanish mid-request are normal under load and fault tests: no stderr tracebacks.
        log.debug("Flow Service emulator: error serving %s", client_address, exc_info=True)

    def cut_connections(self) -> None:
        """Shut down every open client connection so daemon threads stop serving after ``stop()``."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _parse_body(raw: bytes, content_type: str) -> tuple[Any, str]:
    text = raw.decode("utf-8", errors="replace")
    if not raw:
        return None, text
    if "json" in content_type:
        try:
            return json.loads(text), text
        except ValueError:
            return text, text
    if "x-www-form-urlencoded" in content_type:
        return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}, text
    return text, text


class Handler(BaseHTTPRequestHandler):
    """Serves IMS and Flow Service requests from the shared :class:`EmulatorState`."""

    protocol_version = "HTTP/1.1"
    server_version = "FlowServiceEmulator/1.0"
    timeout = 120
    disable_nagle_algorithm = True
    server: EmulatorServer
    _peer_pid: int | None = None
    _peer_parents: tuple[int, ...] = ()
    _peer_resolved = False

    def _peer(self) -> tuple[int | None, int | None]:
        """(client port, client PID); the PID is looked up once per connection, only when asked for."""
        port = self.client_address[1] if isinstance(self.client_address, tuple) else None
        if self.server.identify_peers and not self._peer_resolved and port is not None:
            self._peer_resolved = True
            self._peer_pid = peer_pid(int(port), int(self.server.server_address[1]))
            self._peer_parents = parents_of(self._peer_pid) if self._peer_pid else ()
        return port, self._peer_pid

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines carry no secrets; keep them out of stderr unless debug logging is on.
        log.debug("%s %s", self.address_string(), format % args)

    # ------------------------------------------------------------------------------------------
    def _serve(self) -> None:
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query, keep_blank_values=True)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            self._write(Reply(411, {"error": "send Content-Length, not chunked bodies"}), str(uuid.uuid4()))
            return
        length_header = self.headers.get("Content-Length") or "0"
        length = int(length_header) if length_header.isdigit() else -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            reply = Reply(413 if length > 0 else 400, {"error": f"Content-Length must be 0..{MAX_BODY}"})
            self._write(reply, str(uuid.uuid4()))
            return
        raw = self.rfile.read(length) if length > 0 else b""
        body, text = _parse_body(raw, self.headers.get("Content-Type", "").lower())
        fault = self.server.faults.take(self.command, path)
        client_port, client_pid = self._peer()
        self.server.recorder.add(
            RecordedRequest(
                method=self.command,
                path=path,
                query=query,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                time=time.time(),
                fault=fault.kind if fault else None,
                raw=text,
                peer_port=client_port,
                peer_pid=client_pid,
                peer_parents=self._peer_parents,
            )
        )
        request_id = str(uuid.uuid4())
        if fault is not None and self._apply_fault(fault, request_id):
            return
        try:
            reply = self._route(path, query, body)
        except ApiError as error:
            reply = error.reply
        except Exception:
            log.exception("Flow Service emulator failed on %s %s", self.command, path)
            reply = flow_error(500, "1100-500", "The emulator failed on this request; see its log.")
        if fault is not None and fault.kind == SLOW_ANSWER_KIND:  # done; the answer is late
            self.server.stopping.wait(fault.delay)
        if fault is not None and fault.kind == "drop_after_create":
            self._drop()
            return
        if fault is not None and fault.kind in AFTER_CREATE_KINDS:  # processed, then a gateway 5xx
            status, code = _SERVER_ERRORS[fault.kind.removesuffix("_after_create")]
            reply = flow_error(status, code, f"Injected fault: upstream answered {status}.")
        self._write(reply, request_id)

    def _apply_fault(self, fault: Fault, request_id: str) -> bool:
        """Act on a fault; True when the request is fully handled (answered or dropped)."""
        kind = fault.kind
        if kind == "slow":
            self.server.stopping.wait(fault.delay)
            return False
        if kind in AFTER_CREATE_KINDS or kind == SLOW_ANSWER_KIND:
            return False
        if kind == "drop":
            self._drop()
        elif kind == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()  # the fd really closes (with RST) once rfile/wfile close in finish()
            self.close_connection = True
        elif kind == "429":
            reply = gateway_error(429, "429050")
            if fault.retry_after is not None:
                reply.headers["Retry-After"] = str(fault.retry_after)
            self._write(reply, request_id)
        elif kind == "401":
            self._write(gateway_error(401, "401013"), request_id)
        else:
            status, code = _SERVER_ERRORS[kind]
            self._write(flow_error(status, code, f"Injected fault: upstream answered {status}."), request_id)
        return True

    def _drop(self) -> None:
        """Close the connection without a response (the client sees the connection end)."""
        self.close_connection = True

    def _route(self, path: str, query: dict[str, list[str]], body: Any) -> Reply:
        state = self.server.state
        if path == IMS_TOKEN_PATH:
            if self.command != "POST":
                return Reply(405, {"error": "method_not_allowed", "error_description": "use POST"})
            form = {k: v[-1] for k, v in query.items()}
            if isinstance(body, dict):
                form.update({k: str(v) for k, v in body.items()})
            return state.issue_token(form)
        if not path.startswith(FLOW_SERVICE_PREFIX + "/"):
            return Reply(
                404, {"error": f"no such path {path}; Flow Service lives under {FLOW_SERVICE_PREFIX}"}
            )
        self._check_auth()
        parts = path[len(FLOW_SERVICE_PREFIX) + 1 :].strip("/").split("/")
        routes: dict[tuple[str, str, int], Callable[[], Reply]] = {
            ("POST", "runs", 1): lambda: self._create_run(body),
            ("GET", "runs", 1): lambda: state.list_runs(query),
            ("GET", "runs", 2): lambda: state.get_run(parts[1]),
            ("GET", "flows", 2): lambda: state.get_flow(parts[1]),
            **{
                ("GET", collection, 2): lambda: state.get_connection(parts[0], parts[1])
                for collection in ("sourceConnections", "targetConnections", "connectionSpecs")
            },
        }
        handler = routes.get((self.command, parts[0], len(parts)))
        if handler is None:
            if any(key[1:] == (parts[0], len(parts)) for key in routes):
                raise fail(
                    405, "1000-405", f"{self.command} is not supported on {path}.", "Method Not Allowed"
                )
            raise fail(404, "1000-404", f"No Flow Service resource at {path}.")
        return handler()

    def _create_run(self, body: Any) -> Reply:
        content_type = self.headers.get("Content-Type", "")
        if "application/json" not in content_type.lower():
            raise fail(415, "1001-415", f"Content-Type must be application/json, got {content_type!r}.")
        return self.server.state.create_run(body)

    def _check_auth(self) -> None:
        state = self.server.state
        authorization = self.headers.get("Authorization")
        if not authorization:
            raise ApiError(gateway_error(403, "403010"))
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not state.token_valid(token.strip()):
            raise ApiError(gateway_error(401, "401013"))
        api_key = self.headers.get("x-api-key")
        if not api_key:
            raise ApiError(gateway_error(403, "403000"))
        if api_key != state.client_id:
            raise ApiError(gateway_error(403, "403003"))
        org = self.headers.get("x-gw-ims-org-id")
        if not org:
            raise fail(401, "2001-401", "Header x-gw-ims-org-id is missing; send your IMS org id.")
        if org != state.org_id:
            raise fail(401, "2002-401", f"IMS org {org!r} is not valid for this client; check org_id.")
        sandbox = self.headers.get("x-sandbox-name")
        if not sandbox:
            raise fail(400, "2105-400", "Header x-sandbox-name is missing; send the sandbox name, e.g. prod.")
        if sandbox != state.sandbox_name:
            raise fail(
                400,
                "2105-400",
                f"Sandbox {sandbox!r} does not exist; this emulator serves {state.sandbox_name!r}.",
            )

    def _write(self, reply: Reply, request_id: str) -> None:
        body = reply.body
        if (
            isinstance(body, dict)
            and isinstance(body.get("report"), dict)
            and not body["report"].get("request-id")
        ):
            body["report"]["request-id"] = request_id
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-request-id", request_id)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)
