"""Shared helpers of the reliability tests: a task-instance stand-in, an execute driver that also
runs the deferred path (operator -> trigger -> execute_complete), and request counters.

The operator's own tests drive ``execute()`` the same way (a context with ``ti`` and the data
interval); these helpers add running the trigger a deferral hands over, so one call covers the
blocking and the deferrable path.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pendulum

from airflow_provider_flowservice._retry import RetryPolicy
from airflow_provider_flowservice.operators.flow_service import FlowServiceCreateRunOperator
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator
from airflow_provider_flowservice.triggers.flow_service import FlowServiceRunTrigger
from airflow_provider_flowservice.version_compat import AIRFLOW_V_3_0_PLUS

if AIRFLOW_V_3_0_PLUS:
    from airflow.sdk.exceptions import TaskDeferred
else:
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]

__all__ = [
    "FAST", "FS", "JAN1", "JAN2", "Execution", "FakeTI", "TaskDeferred", "after_clear", "async_wait_until",
    "automatic_retry", "context_for", "execute", "first_try", "lists", "make_op", "polls", "posts",
    "prepare_thread", "run_trigger", "status_of", "wait_until",
]

JAN1 = 1704067200
JAN2 = JAN1 + 86400
FS = "/data/foundation/flowservice"

FAST = RetryPolicy(max_attempts=6, initial_backoff=0.01, max_backoff=0.05, max_total_seconds=10.0)
"""Retry waits of milliseconds: fault tests stay fast, and six attempts outlast any one fault."""


class FakeTI:
    """What the operator reads from a task instance (try numbers) and writes to it (XComs)."""

    def __init__(self, try_number: int = 1, max_tries: int = 1) -> None:
        self.try_number = try_number
        self.max_tries = max_tries
        self.start_date = datetime.now(UTC)
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def first_try() -> FakeTI:
    """Try 1 of a task with ``retries=1`` (Airflow sets ``max_tries = retries``)."""
    return FakeTI(1, 1)


def automatic_retry() -> FakeTI:
    """Try 2 of a task with ``retries=1``: an automatic retry."""
    return FakeTI(2, 1)


def after_clear() -> FakeTI:
    """Try 3 after a clear at try 2 with ``retries=1`` (``max_tries = 2 + 1``): a first try again."""
    return FakeTI(3, 3)


class DagRunOfTest:
    """What the operator reads from a DAG run: its start date (the reuse rule's cutoff before 3.3)."""

    def __init__(self, start_date: datetime | None) -> None:
        self.start_date = start_date


#: The current test's DAG run (reset before each test by the suite's conftest).
DAG_RUN = DagRunOfTest(datetime.now(UTC))


def start_dag_run() -> DagRunOfTest:
    """A new DAG run starts now: every context built from here on belongs to it."""
    DAG_RUN.start_date = datetime.now(UTC)
    return DAG_RUN


def context_for(ti: FakeTI, *, window: tuple[int, int] | None = (JAN1, JAN2), **extra: Any) -> dict[str, Any]:
    """A task context: ``ti``, the test's DAG run, a daily data interval (none with ``window=None``)."""
    context: dict[str, Any] = {"ti": ti, "dag_run": DAG_RUN}
    if window is not None:
        context["data_interval_start"] = pendulum.from_timestamp(window[0], tz="UTC")
        context["data_interval_end"] = pendulum.from_timestamp(window[1], tz="UTC")
    context.update(extra)
    return context


def make_op(flow_id: str, **kwargs: Any) -> FlowServiceCreateRunOperator:
    """The operator with retries=1, tiny poll interval and fast HTTP retries (overridable)."""
    kwargs.setdefault("task_id", "ingest")
    kwargs.setdefault("retries", 1)
    kwargs.setdefault("poll_interval", 0.05)
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("timeout", 30)
    return FlowServiceCreateRunOperator(flow_id=flow_id, **kwargs)


class Execution:
    """What one ``execute`` (plus the deferred leg, if any) left behind."""

    def __init__(self) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.deferred: TaskDeferred | None = None
        self.trigger_kwargs: dict[str, Any] | None = None
        self.events: list[Any] = []


def prepare_thread() -> None:
    """Let a non-main thread call ``execute()`` on Airflow 2 (``ExecutorSafeguard`` keeps a
    thread-local that only the importing thread has)."""
    try:
        from airflow.models.baseoperator import ExecutorSafeguard
    except ImportError:
        return
    sentinel = getattr(ExecutorSafeguard, "_sentinel", None)
    if sentinel is not None and not hasattr(sentinel, "callers"):
        sentinel.callers = {}


def run_trigger(trigger: FlowServiceRunTrigger, limit: float = 30.0) -> list[Any]:
    """Run a trigger to its event in a fresh event loop (what a triggerer does), bounded in time."""

    async def consume() -> list[Any]:
        events = []
        async for event in trigger.run():
            events.append(event)
        return events

    return asyncio.run(asyncio.wait_for(consume(), limit))


def execute(
    op: FlowServiceCreateRunOperator, context: dict[str, Any], *, raise_error: bool = True
) -> Execution:
    """``op.execute(context)``; a deferral runs its trigger and then ``execute_complete``."""
    done = Execution()
    try:
        try:
            done.result = op.execute(context)  # type: ignore[arg-type]
        except TaskDeferred as deferred:
            done.deferred = deferred
            trigger = deferred.trigger
            done.trigger_kwargs = trigger.serialize()[1]
            done.events = run_trigger(trigger)
            assert len(done.events) == 1, done.events
            method: Callable[..., Any] = getattr(op, deferred.method_name)
            done.result = method(context, done.events[0].payload, **(deferred.kwargs or {}))
    except Exception as exc:
        if raise_error:
            raise
        done.error = exc
    return done


def posts(emu: FlowServiceEmulator) -> list[Any]:
    """Recorded ``POST /runs`` requests."""
    return [r for r in emu.requests if r.method == "POST" and r.path == FS + "/runs"]


def polls(emu: FlowServiceEmulator, run_id: str | None = None) -> list[Any]:
    """Recorded ``GET /runs/{id}`` requests (of one run, or of any)."""
    if run_id is not None:
        return [r for r in emu.requests if r.method == "GET" and r.path == f"{FS}/runs/{run_id}"]
    return [r for r in emu.requests if r.method == "GET" and r.path.startswith(FS + "/runs/")]


def status_reads(emu: FlowServiceEmulator) -> list[Any]:
    """Recorded status reads of either kind: ``GET /runs/{id}``, and ``GET /runs`` lists, which a
    trigger that knows its flow sends instead (polls coalesced with the flow's other triggers)."""
    return [r for r in emu.requests if r.method == "GET" and r.path.startswith(FS + "/runs")]


def lists(emu: FlowServiceEmulator) -> list[Any]:
    """Recorded ``GET /runs`` (list) requests."""
    return [r for r in emu.requests if r.method == "GET" and r.path == FS + "/runs"]


def status_of(emu: FlowServiceEmulator, run_id: str) -> str:
    """The run's status as the emulator last computed it."""
    return str(emu.runs[run_id]["metrics"]["statusSummary"]["status"])


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.01) -> bool:
    """Poll ``predicate`` until true or ``timeout`` (bounded); return whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


async def async_wait_until(predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.01) -> bool:
    """:func:`wait_until` without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return predicate()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def serve_tls(server: ThreadingHTTPServer, directory: Path) -> Path:
    """Serve ``server`` over TLS with a fresh self-signed certificate; returns the certificate's path."""
    cert, key = self_signed_certificate(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return cert
