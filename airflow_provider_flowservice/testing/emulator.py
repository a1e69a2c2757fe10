"""A local stand-in for Adobe IMS and Flow Service, for trying the provider and testing DAGs offline.

One real HTTP server on 127.0.0.1 serves both ``/ims/token/v3`` and
``/data/foundation/flowservice/...`` with the shapes, headers and errors of the public API (see
the fact sheet in the docs). Tests drive it from Python: add flows, pick outcomes, inject faults,
then inspect what the client sent. Standard library only; runtime code never imports it.

Run progression: each ``GET /runs/{id}`` counts one poll. With ``polls_to_finish=N`` the first N
polls see ``inProgress`` (or the flow's ``extra_statuses`` first, e.g. ``queued``) and poll N+1
sees the outcome; ``polls_to_finish=0`` finishes on the first poll. Until its first poll a run is
``scheduled``. With ``seconds_to_finish`` set, the clock decides instead and polls do not matter.
Listing runs (``GET /runs``) never counts as a poll.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import quote, urlencode

from airflow_provider_flowservice.testing._faults import FAULT_KINDS, Fault, FaultPlan
from airflow_provider_flowservice.testing._model import (
    CREATE_SHAPES,
    EmulatorState,
    check_flow_options,
    check_outcome,
    check_polls,
    check_shape,
)
from airflow_provider_flowservice.testing._server import (
    IMS_TOKEN_PATH,
    EmulatorServer,
    RecordedRequest,
    Recorder,
)

__all__ = ["DEFAULT_FLOW_ID", "FAULT_KINDS", "FlowServiceEmulator", "RecordedRequest", "main"]

DEFAULT_FLOW_ID = "d8a68c3a-8f3e-4b8d-9f00-5c1d0a6e7a11"
"""The table-based flow the command line emulator serves when given no ``--flow``."""
CONN_TYPE = "adobe_flow_service"


class FlowServiceEmulator:
    """Local IMS + Flow Service on a real HTTP server; a context manager that starts and stops it.

    :param host: interface to bind; keep 127.0.0.1.
    :param port: 0 picks a free port.
    :param client_id: the only client id IMS accepts (also the required ``x-api-key``).
    :param client_secret: the only client secret IMS accepts (a dummy value, not a credential).
    :param org_id: required ``x-gw-ims-org-id``.
    :param sandbox_name: required ``x-sandbox-name``.
    :param token_ttl: token lifetime in seconds (small values exercise renewal).
    :param polls_to_finish: polls of ``GET /runs/{id}`` that see a running status before the outcome.
    :param seconds_to_finish: when set, runs finish this many seconds after creation instead.
    :param outcome: ``success``, ``failed`` or ``partialSuccess`` for flows without their own.
    :param create_response_shape: ``items`` (200 ``{"items": [{id, etag}]}``), ``bare`` (201
        ``{id, etag}``) or ``run`` (200, the whole run, status ``scheduled``).
    :param page_size: runs per page of ``GET /runs`` (``limit`` can only lower it).
    :param max_recorded_requests: cap on :attr:`requests` so long benchmarks stay bounded.
    :param identify_peers: record in each request's ``peer_pid`` which local process sent it (Linux
        ``/proc``, looked up once per connection), e.g. to tell which Airflow triggerer polled a run.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        client_id: str = "emulator-client-id",
        client_secret: str = "emulator-client-secret",
        org_id: str = "EMULATORORG@AdobeOrg",
        sandbox_name: str = "prod",
        token_ttl: float = 86399,
        polls_to_finish: int = 2,
        seconds_to_finish: float | None = None,
        outcome: str = "success",
        create_response_shape: str = "items",
        page_size: int = 10,
        max_recorded_requests: int = 100_000,
        identify_peers: bool = False,
    ) -> None:
        check_outcome(outcome)
        check_shape(create_response_shape)
        check_polls(polls_to_finish)
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {page_size}.")
        self.host = host
        self.port = port
        self._state = EmulatorState(
            client_id=client_id,
            client_secret=client_secret,
            org_id=org_id,
            sandbox_name=sandbox_name,
            token_ttl=token_ttl,
            polls_to_finish=polls_to_finish,
            seconds_to_finish=seconds_to_finish,
            outcome=outcome,
            create_response_shape=create_response_shape,
            page_size=page_size,
        )
        self._identify_peers = identify_peers
        self._faults = FaultPlan()
        self._recorder = Recorder(limit=max_recorded_requests)
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None

    # ----- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FlowServiceEmulator:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            raise RuntimeError("The emulator is already running.")
        server = EmulatorServer(
            (self.host, self.port),
            self._state,
            self._faults,
            self._recorder,
            identify_peers=self._identify_peers,
        )
        self._server = server
        self._state.base_url = self.url
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="flow-service-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections and release the port. Safe to call twice."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.stopping.set()
        server.shutdown()
        server.cut_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FlowServiceEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        """Base URL to use as the connection host, e.g. ``http://127.0.0.1:8765``."""
        host, port = self._address()
        return f"http://{host}:{port}"

    def _address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("The emulator is not running; call start() or use it as a context manager.")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def ims_token_url(self) -> str:
        return self.url + IMS_TOKEN_PATH

    # ----- settings (readable and settable while running) -----------------------------------------
    @property
    def client_id(self) -> str:
        return self._state.client_id

    @property
    def client_secret(self) -> str:
        return self._state.client_secret

    @property
    def org_id(self) -> str:
        return self._state.org_id

    @property
    def sandbox_name(self) -> str:
        return self._state.sandbox_name

    @property
    def token_ttl(self) -> float:
        return self._state.token_ttl

    @token_ttl.setter
    def token_ttl(self, value: float) -> None:
        self._state.token_ttl = value

    @property
    def polls_to_finish(self) -> int:
        return self._state.polls_to_finish

    @polls_to_finish.setter
    def polls_to_finish(self, value: int) -> None:
        self._state.polls_to_finish = check_polls(value)

    @property
    def seconds_to_finish(self) -> float | None:
        return self._state.seconds_to_finish

    @seconds_to_finish.setter
    def seconds_to_finish(self, value: float | None) -> None:
        self._state.seconds_to_finish = value

    @property
    def outcome(self) -> str:
        return self._state.outcome

    @outcome.setter
    def outcome(self, value: str) -> None:
        check_outcome(value)
        self._state.outcome = value

    @property
    def create_response_shape(self) -> str:
        """``items``, ``bare`` or ``run``; applies to runs created after it is set."""
        return self._state.create_response_shape

    @create_response_shape.setter
    def create_response_shape(self, value: str) -> None:
        self._state.create_response_shape = check_shape(value)

    @property
    def page_size(self) -> int:
        return self._state.page_size

    @page_size.setter
    def page_size(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"page_size must be at least 1, got {value}.")
        self._state.page_size = value

    @property
    def next_link_style(self) -> str:
        """How ``_links.next.href`` looks: ``absolute`` (``http://host:port/data/...``) or ``path``."""
        return self._state.next_link_style

    @next_link_style.setter
    def next_link_style(self, value: str) -> None:
        if value not in ("absolute", "path"):
            raise ValueError(f"next_link_style must be 'absolute' or 'path', got {value!r}.")
        self._state.next_link_style = value

    @property
    def refused_filter_fields(self) -> frozenset[str]:
        """Property paths ``GET /runs`` refuses to filter on (HTTP 400), e.g. ``{"params.windowStartTime"}``.

        Default: none; every path filters with ``==``, ``!=``, ``>``, ``<``, ``>=``, ``<=``. Set it to
        test a client's fallback for a server that does not filter on a property.
        """
        return self._state.refused_filter_fields

    @refused_filter_fields.setter
    def refused_filter_fields(self, value: Sequence[str]) -> None:
        if isinstance(value, str):
            raise ValueError("refused_filter_fields must be a collection of property paths, not one string.")
        self._state.refused_filter_fields = frozenset(value)

    @property
    def list_lag(self) -> float:
        """Seconds ``GET /runs`` lags behind ``GET /runs/{id}`` (default 0): the list shows every run
        as it was that long ago, and not at all when it was created since. Set it to test a client
        that reads runs from the list."""
        return self._state.list_lag

    @list_lag.setter
    def list_lag(self, value: float) -> None:
        if not value >= 0:
            raise ValueError(f"list_lag must be seconds >= 0, got {value!r}.")
        self._state.list_lag = float(value)

    # ----- flows ----------------------------------------------------------------------------------
    def add_flow(
        self,
        flow_id: str | None = None,
        *,
        name: str | None = None,
        kind: str = "table",
        delta_column: str | None = None,
        outcome: str | None = None,
        polls_to_finish: int | None = None,
        seconds_to_finish: float | None = None,
        errors: list[dict[str, Any]] | None = None,
        state: str = "enabled",
        status_case: str | None = None,
        extra_statuses: Sequence[str] = (),
        source_kind: str | None = None,
        dataset_id: str | None = None,
        on_demand: bool = True,
        final_status: str | None = None,
    ) -> str:
        """Register a flow and return its id (a new UUID unless given).

        :param kind: ``table`` (accepts ``deltaColumn``; the first one given sticks) or ``file``
            (refuses ``deltaColumn``).
        :param delta_column: a delta column the flow already holds.
        :param outcome: how this flow's runs end; default: the emulator's ``outcome``.
        :param errors: ``[{"code", "message"}]`` reported by finished runs (in ``statusSummary``
            and in the activity). Default: one ``CONNECTOR-2001-500`` for failed and
            partialSuccess runs, none for success. Given for a success flow, a success run
            carries them (as the docs say can happen).
        :param state: ``enabled``; any other value makes ``POST /runs`` refuse the flow.
        :param status_case: ``None`` (as documented), ``title`` (``Failed``, ``InProgress``),
            ``upper`` or ``lower``: how this flow's run statuses are spelled.
        :param extra_statuses: statuses unknown to the docs (e.g. ``["queued"]``) shown on the
            first polls before ``inProgress``, to exercise lenient parsing.
        :param source_kind: what the flow reads (its source connection and connection spec):
            ``amazon-s3`` (file; the default for ``kind="file"``), ``snowflake`` (the default for
            ``kind="table"``), ``postgresql`` or ``salesforce``.
        :param dataset_id: the dataset its target connection writes to (default: a new id).
        :param on_demand: False makes ``POST /runs`` refuse the flow as not runnable on demand.
        :param final_status: the status a finished run shows instead of its outcome's (e.g.
            ``Cancelled``), with ``completedAtUTC`` set: a run that ended in a state the docs
            do not list.
        """
        if outcome is not None:
            check_outcome(outcome)
        if polls_to_finish is not None:
            check_polls(polls_to_finish)
        check_flow_options(status_case, extra_statuses)
        options = {
            "outcome": outcome,
            "polls_to_finish": polls_to_finish,
            "seconds_to_finish": seconds_to_finish,
            "errors": errors,
            "status_case": status_case,
            "extra_statuses": list(extra_statuses),
            "on_demand": on_demand,
            "final_status": final_status,
        }
        return self._state.add_flow(
            flow_id,
            name=name,
            kind=kind,
            delta_column=delta_column,
            state=state,
            options=options,
            source_kind=source_kind,
            dataset_id=dataset_id,
        )

    def set_flow_state(self, flow_id: str, state: str) -> None:
        """Change a flow's ``state``: ``disabled`` refuses creates; ``deleted`` also hides the flow."""
        with self._state.lock:
            self._state.flows[flow_id]["state"] = state

    def target_dataset_id(self, flow_id: str) -> str:
        """The dataset id the flow's target connection writes to."""
        with self._state.lock:
            target_id = self._state.flows[flow_id]["targetConnectionIds"][0]
            return str(self._state.connections["targetConnections"][target_id]["params"]["dataSetId"])

    # ----- inspection -----------------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, oldest first (live list; see :meth:`reset_requests`)."""
        return self._recorder.items

    def reset_requests(self) -> None:
        with self._recorder.lock:
            self._recorder.items.clear()

    @property
    def runs(self) -> dict[str, dict[str, Any]]:
        """Run id -> run JSON as last computed (a poll via ``GET /runs/{id}`` updates it)."""
        return self._state.runs

    @property
    def flows(self) -> dict[str, dict[str, Any]]:
        return self._state.flows

    @property
    def tokens_issued(self) -> list[str]:
        """Every access token handed out, so tests can check none leaked into logs."""
        return self._state.tokens_issued

    @property
    def token_requests(self) -> int:
        """Token requests that reached IMS logic (refused ones included, fault-eaten ones not)."""
        return self._state.token_requests

    def runs_for_flow(self, flow_id: str) -> list[dict[str, Any]]:
        """Copies of a flow's runs, oldest first."""
        return self._state.runs_for_flow(flow_id)

    # ----- faults ---------------------------------------------------------------------------------
    def inject(
        self,
        fault: str,
        *,
        method: str | None = None,
        path: str | None = None,
        times: int = 1,
        retry_after: str | int | float | None = None,
        delay: float = 0.0,
    ) -> None:
        """Make the next ``times`` matching requests fail with ``fault`` (faults are used in order).

        ``path`` matches as a substring of the request path (``"/runs"``, ``"/ims"``); without it a
        fault hits only Flow Service requests, never the token request. Kinds: ``429`` (with
        ``Retry-After`` when ``retry_after`` is given: seconds or an HTTP date), ``500``/``502``/
        ``503``/``504``, ``slow`` (wait ``delay`` s, then answer), ``drop`` (close without answer,
        not processed), ``drop_after_create`` (process, e.g. create the run, then close without
        answer), ``500_after_create``/``502_after_create``/``503_after_create``/``504_after_create``
        (process, e.g. create the run, then answer that 5xx: a gateway error although the run
        exists), ``slow_after_create`` (process at once, e.g. create the run, then hold the answer
        ``delay`` s: a client that dies meanwhile never learns the run exists), ``reset`` (TCP RST),
        ``401`` (gateway "token not valid").
        """
        self._faults.add(
            Fault(
                kind=str(fault),
                method=method,
                path=path,
                times=times,
                retry_after=None if retry_after is None else str(retry_after),
                delay=delay,
            )
        )

    def clear_faults(self) -> None:
        """Forget injected faults and turn random faults off."""
        self._faults.clear()

    @property
    def pending_faults(self) -> list[Fault]:
        return self._faults.pending

    def set_random_faults(
        self, rate: float, kinds: Sequence[str], seed: int | None = None, *, delay: float = 0.5
    ) -> None:
        """Give each Flow Service request a random fault from ``kinds`` with probability ``rate``.

        ``set_random_faults(0, [])`` turns it off. A random ``slow`` waits ``delay`` seconds.
        """
        self._faults.set_random(rate, kinds, seed, delay)

    def revoke_tokens(self) -> None:
        """Invalidate every issued token (the next Flow Service call gets 401013)."""
        self._state.revoke_tokens()

    # ----- connection helpers ---------------------------------------------------------------------
    def connection_extra(self) -> dict[str, str]:
        return {"org_id": self.org_id, "sandbox_name": self.sandbox_name, "ims_url": self.ims_token_url}

    def connection_json(self, **extra: Any) -> str:
        """JSON for ``AIRFLOW_CONN_FLOW_SERVICE_DEFAULT``; ``extra`` adds or overrides extra fields."""
        return json.dumps(
            {
                "conn_type": CONN_TYPE,
                "host": self.url,
                "login": self.client_id,
                "password": self.client_secret,
                "extra": {**self.connection_extra(), **extra},
            }
        )

    def connection_uri(self) -> str:
        """Airflow URI form (``adobe-flow-service://http://id:secret@127.0.0.1:PORT/?org_id=...``).

        Airflow parses the host as ``http://127.0.0.1`` and the port separately.
        """
        host, port = self._address()
        auth = f"{quote(self.client_id, safe='')}:{quote(self.client_secret, safe='')}"
        return f"adobe-flow-service://http://{auth}@{host}:{port}/?{urlencode(self.connection_extra())}"


# ----- command line ----------------------------------------------------------------------------------
def _parse_flow(spec: str) -> tuple[str, str]:
    flow_id, _, kind = spec.partition(":")
    kind = kind or "table"
    if not flow_id or kind not in ("table", "file"):
        raise argparse.ArgumentTypeError(f"--flow takes ID, ID:table or ID:file, got {spec!r}.")
    return flow_id, kind


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="flow-service-emulator",
        description="Local Adobe IMS + Flow Service emulator for trying airflow-provider-flowservice.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port (default 8765)")
    parser.add_argument(
        "--flow",
        action="append",
        type=_parse_flow,
        metavar="ID[:table|:file]",
        help=f"a flow to serve (repeatable; default one table flow {DEFAULT_FLOW_ID})",
    )
    parser.add_argument("--outcome", default="success", choices=["success", "failed", "partialSuccess"])
    parser.add_argument("--polls-to-finish", type=int, default=2)
    parser.add_argument("--seconds-to-finish", type=float, default=None)
    parser.add_argument("--token-ttl", type=float, default=86399)
    parser.add_argument("--create-response-shape", default="items", choices=list(CREATE_SHAPES))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``flow-service-emulator``: serve until Ctrl-C or SIGTERM."""
    args = _arguments(argv)
    emulator = FlowServiceEmulator(
        args.host,
        args.port,
        token_ttl=args.token_ttl,
        polls_to_finish=args.polls_to_finish,
        seconds_to_finish=args.seconds_to_finish,
        outcome=args.outcome,
        create_response_shape=args.create_response_shape,
    )
    for flow_id, kind in args.flow or [(DEFAULT_FLOW_ID, "table")]:
        emulator.add_flow(flow_id, kind=kind)
    done = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    emulator.start()
    try:
        lines = [
            f"Flow Service emulator listening on {emulator.url}",
            f"Flows: {', '.join(emulator.flows)}",
            "Use it from Airflow with (the client secret is the emulator's dummy value):",
            f"  export AIRFLOW_CONN_FLOW_SERVICE_DEFAULT='{emulator.connection_json()}'",
            "Stop with Ctrl-C.",
        ]
        print("\n".join(lines), flush=True)
        while not done.wait(0.5):
            pass
    finally:
        emulator.stop()
    print("Flow Service emulator stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
