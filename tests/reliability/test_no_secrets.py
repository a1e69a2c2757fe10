"""No client secret and no access token anywhere a person or a database can see them.

Every end-to-end scenario runs in real Airflow (``dag.test()``) against an emulator whose client
secret is distinctive; afterwards everything the run left behind is collected (task and trigger
logs at DEBUG for every logger, captured stdout/stderr, Airflow's log files, every XCom row,
rendered template fields, the exception with its repr, attributes and traceback, the trigger's
serialized kwargs, the hook's, settings' and token cache's reprs) and searched for the secret
and for every token the emulator issued.

Also here: credentials never follow a redirect to another host, and TLS verification is on by
default (a self-signed HTTPS endpoint is refused before anything is sent).
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_provider_flowservice._auth import TOKEN_CACHE
from airflow_provider_flowservice._retry import RetryPolicy
from airflow_provider_flowservice.exceptions import FlowServiceApiError, FlowServiceError
from airflow_provider_flowservice.hooks.flow_service import FlowServiceAsyncHook, FlowServiceHook
from airflow_provider_flowservice.operators.flow_service import FlowServiceCreateRunOperator
from airflow_provider_flowservice.sensors.flow_service import FlowServiceRunSensor
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator
from airflow_provider_flowservice.triggers.flow_service import FlowServiceRunTrigger
from airflow_provider_flowservice.version_compat import AIRFLOW_V_3_0_PLUS
from tests.e2e.harness import record_failure, run_dag
from tests.reliability._support import (
    FAST,
    JAN1,
    JAN2,
    context_for,
    execute,
    first_try,
    make_op,
    serve_tls,
)
from tests.reliability.conftest import SECRET

if AIRFLOW_V_3_0_PLUS:
    from airflow.sdk import DAG
else:
    from airflow import DAG

pytestmark = pytest.mark.timeout(120)

WRONG_SECRET = f"wr0ng-s3cr3t-{uuid.uuid4()}"
LOGICAL = pendulum.datetime(2024, 1, 2, tz="UTC")
SHORT = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02, max_total_seconds=2.0)
_ids = iter(range(1_000_000))


# ---------------------------------------------------------------- collecting what a run leaves behind


def leaks(text: str, needles: list[str]) -> list[str]:
    """The needles found in ``text`` (shown shortened, so a failure does not print a secret)."""
    return [f"{n[:6]}... (len {len(n)})" for n in needles if n and n in text]


def test_leak_scan_finds_a_planted_secret() -> None:
    """The scan itself can fail: a secret inside a larger text is reported."""
    found = leaks(f"Authorization: Bearer {SECRET}; end", [SECRET, "absent"])
    assert found == [f"{SECRET[:6]}... (len {len(SECRET)})"]
    assert leaks("nothing here", [SECRET]) == []


def _db_rows(dag_id: str) -> list[str]:
    """Every XCom value, rendered-fields row and trigger row that mentions this DAG (as text)."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    if AIRFLOW_V_3_0_PLUS:
        from airflow.models.xcom import XComModel as XComRow
    else:
        from airflow.models.xcom import BaseXCom as XComRow  # type: ignore[no-redef]
    texts: list[str] = []
    with create_session() as session:
        for row in session.query(XComRow).filter(XComRow.dag_id == dag_id).all():
            value = row.value
            shown = value.decode("utf-8", "replace") if isinstance(value, bytes) else repr(value)
            texts.append(f"xcom {row.key}: {shown}")
        for row in session.query(RenderedTaskInstanceFields).filter(
            RenderedTaskInstanceFields.dag_id == dag_id
        ).all():
            texts.append(f"rtif: {row.rendered_fields!r}")
        from airflow.models.trigger import Trigger

        for row in session.query(Trigger).all():
            try:
                texts.append(f"trigger {row.classpath}: {row.kwargs!r}")
            except Exception as exc:  # kwargs may be encrypted with a key this process lacks
                texts.append(f"trigger {row.classpath}: unreadable ({type(exc).__name__})")
    return texts


def _log_files(since: float) -> list[str]:
    """Airflow's task and trigger log files written during the scenario."""
    home = Path(os.environ["AIRFLOW_HOME"])
    texts = []
    for path in home.rglob("*.log"):
        try:
            if path.stat().st_mtime >= since:
                texts.append(path.read_text(errors="replace"))
        except OSError:
            continue
    return texts


def _exception_texts(exc: BaseException) -> list[str]:
    texts = [str(exc), repr(exc), repr(vars(exc)), "".join(traceback.format_exception(exc))]
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc:
        texts += [str(cause), repr(cause), repr(vars(cause))]
    return texts


@pytest.fixture
def trigger_kwargs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The serialized form (JSON, what the triggerer stores) of every trigger created.

    Airflow 3 serializes the trigger itself; Airflow 2's ``dag.test()`` runs it inline without
    doing so, so every trigger made is serialized here too.
    """
    seen: list[str] = []
    serialize, init = FlowServiceRunTrigger.serialize, FlowServiceRunTrigger.__init__

    def spy_serialize(self: FlowServiceRunTrigger) -> tuple[str, dict[str, Any]]:
        result = serialize(self)
        seen.append(json.dumps(result, default=str))
        return result

    def spy_init(self: FlowServiceRunTrigger, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        seen.append(json.dumps(serialize(self), default=str))

    monkeypatch.setattr(FlowServiceRunTrigger, "serialize", spy_serialize)
    monkeypatch.setattr(FlowServiceRunTrigger, "__init__", spy_init)
    return seen


@pytest.fixture
def collect(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], trigger_kwargs: list[str]
) -> Callable[..., str]:
    """Everything a scenario left behind, as one text."""
    caplog.set_level(logging.DEBUG)
    started = datetime.now(UTC).timestamp() - 1

    def gather(dag_id: str, result: Any = None, extra: list[str] | None = None) -> str:
        out, err = capfd.readouterr()
        parts = [caplog.text, out, err, *trigger_kwargs, *_db_rows(dag_id), *_log_files(started)]
        for record in caplog.records:
            parts.append(record.getMessage())
            if record.exc_info and record.exc_info[1] is not None:
                parts += _exception_texts(record.exc_info[1])
        if result is not None:
            for exc in result.errors.values():
                parts += _exception_texts(exc)
            for ti in result.task_instances.values():
                for key in ("return_value", "run_url"):
                    parts.append(repr(ti.xcom_pull(task_ids=ti.task_id, key=key)))
                task = getattr(ti, "task", None)
                for name in getattr(task, "template_fields", ()):
                    parts.append(f"{name}={getattr(task, name, None)!r}")
        hook = FlowServiceHook()
        parts += [repr(hook), repr(hook.settings), repr(hook.tokens), repr(TOKEN_CACHE.__dict__)]
        return "\n".join([*parts, *(extra or [])])

    return gather


def make_dag(*tasks: Callable[[], Any]) -> Any:
    dag_id = f"secrets_{next(_ids)}_{datetime.now(UTC).strftime('%H%M%S%f')}"
    with DAG(
        dag_id,
        schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
        start_date=pendulum.datetime(2023, 1, 1, tz="UTC"),
        catchup=False,
    ) as dag:
        previous = None
        for build in tasks:
            task = build()
            if previous is not None:
                previous >> task
            previous = task
    return dag


def create(flow: str, **kwargs: Any) -> Callable[[], Any]:
    kwargs.setdefault("poll_interval", 0.05)
    kwargs.setdefault("retry", FAST)
    return lambda: FlowServiceCreateRunOperator(
        task_id="create_run", flow_id=flow, on_failure_callback=record_failure, **kwargs
    )


def sensor(**kwargs: Any) -> Callable[[], Any]:
    return lambda: FlowServiceRunSensor(
        task_id="wait",
        run_id="{{ ti.xcom_pull(task_ids='create_run') }}",
        poll_interval=0.05,
        timeout=30,
        retry=FAST,
        on_failure_callback=record_failure,
        **kwargs,
    )


# ---------------------------------------------------------------- end-to-end scenarios


def _scenario(name: str, emu: FlowServiceEmulator, define_conn: Callable[..., str]) -> tuple[Any, str]:
    """Build and run one scenario's DAG; returns (dag, expected state of its last task)."""
    if name == "blocking-success":
        return make_dag(create(emu.add_flow())), "success"
    if name == "deferrable-success":
        return make_dag(create(emu.add_flow(polls_to_finish=2), deferrable=True)), "success"
    if name == "failed-run":
        return make_dag(create(emu.add_flow(outcome="failed"), deferrable=True)), "failed"
    if name == "partial-success":
        return make_dag(create(emu.add_flow(outcome="partialSuccess"))), "failed"
    if name == "auth-failure-ims":
        conn = define_conn("aep_wrong_secret", password=WRONG_SECRET)
        return make_dag(create(emu.add_flow(), flow_service_conn_id=conn)), "failed"
    if name == "auth-failure-gateway":
        emu.inject("401", method="GET", path="/flowservice/runs/", times=2)
        return make_dag(create(emu.add_flow(polls_to_finish=3), deferrable=True)), "failed"
    if name == "retries-exhausted":
        emu.inject("503", method="POST", times=20)
        return make_dag(create(emu.add_flow(), retry=SHORT)), "failed"
    if name == "sensor-poke":
        flow = emu.add_flow(polls_to_finish=2)
        return make_dag(create(flow, wait_for_completion=False), sensor(mode="poke")), "success"
    if name == "sensor-deferrable":
        flow = emu.add_flow(polls_to_finish=3)
        return make_dag(create(flow, wait_for_completion=False), sensor(deferrable=True)), "success"
    raise AssertionError(name)


SCENARIOS = [
    "blocking-success", "deferrable-success", "failed-run", "partial-success", "auth-failure-ims",
    "auth-failure-gateway", "retries-exhausted", "sensor-poke", "sensor-deferrable",
]


@pytest.mark.parametrize("name", SCENARIOS)
def test_no_secret_anywhere_after_a_dag_run(
    name: str, airflow_db: Path, emu: FlowServiceEmulator, define_conn: Callable[..., str],
    collect: Callable[..., str], trigger_kwargs: list[str],
) -> None:
    dag, expected = _scenario(name, emu, define_conn)
    result = run_dag(dag, logical_date=LOGICAL)
    final = "wait" if name.startswith("sensor") else "create_run"
    assert result.states.get(final) == expected, (result.states, result.errors)
    assert result.states.get("create_run") in ("success", expected)
    text = collect(dag.dag_id, result)

    # the scenario really exercised the credentials, and the collection really caught the run
    ims = [r for r in emu.requests if r.path == "/ims/token/v3"]
    assert ims, "no token request: the scenario did not use the credentials"
    sent_secret = WRONG_SECRET if name == "auth-failure-ims" else SECRET
    assert sent_secret in ims[0].raw  # positive control: the secret did travel, to IMS only
    runs = list(emu.runs)
    assert all(run_id in text for run_id in runs), "the collected text misses the run's own traces"
    if "deferrable" in name or name in ("failed-run", "auth-failure-gateway"):
        assert trigger_kwargs, "no trigger was serialized"
    if expected == "failed":
        assert result.errors, "no exception was recorded"

    needles = [SECRET, WRONG_SECRET, *emu.tokens_issued]
    assert leaks(text, needles) == []
    # the token was only ever sent as a header to the configured host (never in a URL or body)
    for request in emu.requests:
        in_url = request.path + json.dumps(request.query)
        assert leaks(in_url, emu.tokens_issued) == []
        if request.path != "/ims/token/v3":
            assert leaks(request.raw, needles) == []


def test_no_secret_in_direct_execute_leftovers(emu: FlowServiceEmulator) -> None:
    """The deferred path outside dag.test(): XComs pushed, trigger kwargs and the event payload."""
    flow = emu.add_flow(outcome="failed")
    done = execute(make_op(flow, deferrable=True), context_for(first_try()), raise_error=False)
    assert isinstance(done.error, FlowServiceError)
    texts = [
        json.dumps(done.trigger_kwargs), json.dumps([e.payload for e in done.events]),
        repr(context_for(first_try())), *_exception_texts(done.error),
    ]
    assert done.trigger_kwargs and set(done.trigger_kwargs) == {
        "run_id", "flow_service_conn_id", "poll_interval", "end_time", "retry", "flow_id",
    }
    assert leaks("\n".join(texts), [SECRET, *emu.tokens_issued]) == []


# ---------------------------------------------------------------- redirects


class RecordingServer(ThreadingHTTPServer):
    """An HTTP server that keeps what it received and may answer every request with a redirect."""

    daemon_threads = True

    def __init__(self, host: str, location: str | None = None, status: int = 307) -> None:
        super().__init__((host, 0), Recorder)
        self.hits: list[dict[str, Any]] = []
        self.location = location
        self.status = status


class Recorder(BaseHTTPRequestHandler):
    """Records every request; answers a redirect (``server.location`` set) or 200 ``{}``."""

    protocol_version = "HTTP/1.1"
    server: RecordingServer

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode(errors="replace") if length else ""
        self.server.hits.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        )
        location = self.server.location
        self.send_response(self.server.status if location else 200)
        if location:
            self.send_header("Location", location + self.path)
        payload = b"" if location else b"{}"
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _serve

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[Callable[..., RecordingServer]]:
    servers: list[RecordingServer] = []

    def start(host: str = "127.0.0.1", location: str | None = None, status: int = 307) -> RecordingServer:
        server = RecordingServer(host, location, status)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [302, 307])
def test_redirects_are_refused_and_credentials_stay_home(
    emu: FlowServiceEmulator, define_conn: Callable[..., str], http_server: Callable[..., RecordingServer],
    status: int,
) -> None:
    elsewhere = http_server("127.0.0.2")
    other = f"http://127.0.0.2:{elsewhere.server_address[1]}"
    redirector = http_server(location=other, status=status)
    conn = define_conn("aep_redirect", host=f"http://127.0.0.1:{redirector.server_address[1]}")
    flow = emu.add_flow()

    with pytest.raises(FlowServiceApiError) as on_create:  # POST /runs answered with a redirect
        FlowServiceHook(conn, retry=FAST).create_run(flow, JAN1, JAN2)
    done = execute(make_op(flow, flow_service_conn_id=conn), context_for(first_try()), raise_error=False)

    async def poll() -> None:
        async with FlowServiceAsyncHook(conn, retry=FAST) as hook:
            await hook.get_run("some-run")

    import asyncio

    with pytest.raises(FlowServiceApiError) as on_poll:  # the trigger's GET answered with a redirect
        asyncio.run(poll())

    for error in (on_create.value, done.error, on_poll.value):
        assert isinstance(error, FlowServiceApiError), error
        message = str(error)
        assert f"HTTP {status}" in message and f"127.0.0.2:{elsewhere.server_address[1]}" in message
        assert "not followed" in message
        assert leaks(message, [SECRET, *emu.tokens_issued]) == []
    assert len(redirector.hits) == 3  # one request each: a redirect is not retried either
    assert all(h["headers"].get("Authorization", "").startswith("Bearer ") for h in redirector.hits)
    assert elsewhere.hits == []  # nothing, with or without credentials, reached the other host


def test_ims_redirect_does_not_carry_the_client_secret_away(
    emu: FlowServiceEmulator, define_conn: Callable[..., str], http_server: Callable[..., RecordingServer]
) -> None:
    elsewhere = http_server("127.0.0.2")
    redirector = http_server(location=f"http://127.0.0.2:{elsewhere.server_address[1]}")
    conn = define_conn(
        "aep_ims_redirect", ims_url=f"http://127.0.0.1:{redirector.server_address[1]}/ims/token/v3"
    )
    with pytest.raises(FlowServiceApiError) as info:
        FlowServiceHook(conn, retry=FAST).get_run("some-run")
    assert "redirect" in str(info.value) and SECRET not in str(info.value)
    assert len(redirector.hits) == 1
    assert elsewhere.hits == []
    assert emu.requests == []


# ---------------------------------------------------------------- TLS


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[RecordingServer, Path]]:
    """An HTTPS server with a self-signed certificate that records what it receives."""
    server = RecordingServer("127.0.0.1")
    cert = serve_tls(server, tmp_path)
    try:
        yield server, cert
    finally:
        server.shutdown()
        server.server_close()


def test_tls_verification_is_on_by_default(
    emu: FlowServiceEmulator, define_conn: Callable[..., str], https_server: tuple[RecordingServer, Path]
) -> None:
    server, cert = https_server
    base = f"https://127.0.0.1:{server.server_address[1]}"
    conn = define_conn("aep_tls", host=base, ims_url=base + "/ims/token/v3")
    hook = FlowServiceHook(conn, retry=FAST)
    assert hook.settings.verify is True  # nothing configured: verification on

    with pytest.raises(FlowServiceApiError) as info:
        hook.get_run("some-run")
    assert "verify_tls" in str(info.value)  # says where to give a CA bundle

    async def poll() -> None:
        async with FlowServiceAsyncHook(conn, retry=FAST) as async_hook:
            await async_hook.get_run("some-run")
            raise AssertionError("the self-signed endpoint was trusted")

    import asyncio

    with pytest.raises(FlowServiceError):
        asyncio.run(poll())
    assert server.hits == []  # the handshake failed: not one byte of HTTP, no secret, was sent
    assert SECRET not in str(info.value)

    # positive control: trusting this certificate explicitly lets the same request through
    trusted = define_conn(
        "aep_tls_trusted", host=base, ims_url=base + "/ims/token/v3", verify_tls=str(cert)
    )
    with pytest.raises(FlowServiceError):  # the recorder's empty answer is no token, but it arrived
        FlowServiceHook(trusted, retry=FAST).get_run("some-run")
    assert [h["path"] for h in server.hits] == ["/ims/token/v3"]


async def test_async_client_verifies_tls_by_default(emu: FlowServiceEmulator) -> None:
    from airflow_provider_flowservice.hooks import _session

    hook = FlowServiceAsyncHook(retry=FAST)
    try:
        settings = await hook.get_settings()
        context = await _session.ssl_for(settings.tls_verify())
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname is True
    finally:
        await hook.aclose()
    sync = FlowServiceHook()
    assert sync.settings.verify is True and sync.settings.tls_verify() == settings.tls_verify()
