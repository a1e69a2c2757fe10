"""The emulator's state: IMS tokens, flows and runs, and the Flow Service rules applied to them.

Everything here runs under one lock held by :class:`EmulatorState`; the HTTP handler only parses
requests and writes replies. Run status is computed lazily: ``GET /runs/{id}`` counts a poll and
moves the run along, listing never does (time-based runs move with the clock either way).
"""

from __future__ import annotations

import copy
import secrets
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_flowservice.testing._listing import RunQuery, field_value, refuse_filters
from airflow_provider_flowservice.testing._responses import BAD_REQUEST, Reply, fail
from airflow_provider_flowservice.testing._sources import (
    DEFAULT_SOURCE,
    check_source_kind,
    connections_for,
    new_dataset_id,
)

OUTCOMES = {"success": "success", "failed": "failed", "partialsuccess": "partialSuccess"}
CREATE_SHAPES = ("items", "bare", "run")
STATUS_CASES = (None, "title", "upper", "lower")
FLOW_KINDS = ("table", "file")
FLOW_NOT_FOUND = "1430-400"
FLOW_DISABLED = "1431-400"
NOT_ON_DEMAND = "1432-400"
"""Emulator's own code: the flow cannot run on demand (the docs publish no code for this)."""
CONNECTION_NOT_FOUND = "1440-404"
RUN_NOT_FOUND = "1439-404"
MILLISECONDS_THRESHOLD = 100_000_000_000
"""A window value above this (year 5138 in seconds) is taken for milliseconds and refused."""

DEFAULT_ERRORS = [
    {
        "code": "CONNECTOR-2001-500",
        "message": "Something went wrong in the source connection while reading data; "
        "check the source connection and retry.",
    }
]
_RECORDS = {
    "success": (100, 100, 0),
    "partialSuccess": (100, 95, 5),
    "failed": (100, 0, 100),
}


def now_ms() -> int:
    return int(time.time() * 1000)


def new_etag() -> str:
    return f'"{uuid.uuid4()}"'


def cased(status: str, case: str | None) -> str:
    """Spell a status the way a flow was told to (``title``: ``Failed``, ``InProgress``)."""
    if case == "title":
        return status[:1].upper() + status[1:]
    if case == "upper":
        return status.upper()
    if case == "lower":
        return status.lower()
    return status


@dataclass
class RunMeta:
    """What the emulator knows about a run beyond its JSON: how and when it finishes."""

    seq: int
    created: float
    flow_kind: str
    outcome: str
    polls_to_finish: int
    seconds_to_finish: float | None
    errors: list[dict[str, Any]]
    waiting_statuses: list[str]
    status_case: str | None
    final_status: str | None = None
    polls: int = 0
    finished: bool = False
    history: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    """(monotonic time, copy of the run) at creation and after each change: what a lagging list shows."""


def _seconds_param(params: dict[str, Any], key: str, *, required: bool) -> int | None:
    value = params.get(key)
    if value is None:
        if required:
            raise fail(400, BAD_REQUEST, f'params.{key} is required: unix seconds, e.g. "1651584991".')
        return None
    numeric = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    numeric = numeric or (isinstance(value, str) and value.strip().isdigit())
    if not numeric:
        raise fail(
            400,
            BAD_REQUEST,
            f"params.{key} must be unix seconds as an integer or a numeric string, got {value!r}.",
        )
    seconds = int(value)
    if seconds > MILLISECONDS_THRESHOLD:
        raise fail(
            400,
            BAD_REQUEST,
            f"params.{key}={seconds} looks like milliseconds; send unix seconds (e.g. {seconds // 1000}).",
        )
    return seconds


class EmulatorState:
    """Flows, runs and tokens behind one lock; settings are plain attributes read at use time."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        org_id: str,
        sandbox_name: str,
        token_ttl: float,
        polls_to_finish: int,
        seconds_to_finish: float | None,
        outcome: str,
        create_response_shape: str,
        page_size: int,
    ) -> None:
        self.lock = threading.RLock()
        self.client_id = client_id
        self.client_secret = client_secret
        self.org_id = org_id
        self.sandbox_name = sandbox_name
        self.token_ttl = token_ttl
        self.polls_to_finish = polls_to_finish
        self.seconds_to_finish = seconds_to_finish
        self.outcome = outcome
        self.create_response_shape = create_response_shape
        self.page_size = page_size
        self.next_link_style = "absolute"
        self.refused_filter_fields: frozenset[str] = frozenset()
        self.list_lag = 0.0
        self.base_url = ""
        self.flows: dict[str, dict[str, Any]] = {}
        self.flow_options: dict[str, dict[str, Any]] = {}
        self.connections: dict[str, dict[str, dict[str, Any]]] = {
            "sourceConnections": {}, "targetConnections": {}, "connectionSpecs": {}
        }
        self.runs: dict[str, dict[str, Any]] = {}
        self.meta: dict[str, RunMeta] = {}
        self.tokens: dict[str, float] = {}
        self.tokens_issued: list[str] = []
        self.token_requests = 0
        self._seq = 0

    # ----- IMS -----------------------------------------------------------------------------------
    def issue_token(self, form: dict[str, str]) -> Reply:
        with self.lock:
            self.token_requests += 1
            if form.get("grant_type") != "client_credentials":
                return Reply(
                    400,
                    {
                        "error": "unsupported_grant_type",
                        "error_description": "grant_type must be client_credentials",
                    },
                )
            if form.get("client_id") != self.client_id:
                return Reply(
                    401, {"error": "invalid_client", "error_description": "invalid client_id parameter"}
                )
            if form.get("client_secret") != self.client_secret:
                return Reply(
                    401, {"error": "invalid_client", "error_description": "invalid client_secret parameter"}
                )
            token = "eyJ" + secrets.token_urlsafe(40)
            self.tokens[token] = time.monotonic() + float(self.token_ttl)
            self.tokens_issued.append(token)
            ttl = self.token_ttl
            expires_in = int(ttl) if float(ttl).is_integer() else ttl
            return Reply(200, {"access_token": token, "token_type": "bearer", "expires_in": expires_in})

    def token_valid(self, token: str) -> bool:
        with self.lock:
            expiry = self.tokens.get(token)
            return expiry is not None and time.monotonic() < expiry

    def revoke_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    # ----- flows ---------------------------------------------------------------------------------
    def add_flow(
        self,
        flow_id: str | None,
        *,
        name: str | None,
        kind: str,
        delta_column: str | None,
        state: str,
        options: dict[str, Any],
        source_kind: str | None = None,
        dataset_id: str | None = None,
    ) -> str:
        if kind not in FLOW_KINDS:
            raise ValueError(f"kind must be 'table' or 'file', got {kind!r}.")
        if kind == "file" and delta_column:
            raise ValueError("A file-based flow has no deltaColumn; drop delta_column or use kind='table'.")
        source_kind = check_source_kind(source_kind or DEFAULT_SOURCE[kind], kind)
        flow_id = flow_id or str(uuid.uuid4())
        created = now_ms()
        source, target, spec = connections_for(source_kind, dataset_id or new_dataset_id(flow_id), created)
        transformations: list[dict[str, Any]] = [
            {"name": "Mapping", "params": {"mappingId": uuid.uuid4().hex, "mappingVersion": 0}}
        ]
        if kind == "table":
            copy_params = {"deltaColumn": {"name": delta_column}} if delta_column else {}
            transformations.insert(0, {"name": "Copy", "params": copy_params})
        flow = {
            "id": flow_id,
            "name": name or f"Emulated {kind}-based flow",
            "description": f"Flow Service emulator ({kind}-based source)",
            "flowSpec": {"id": "9753525b-82c7-4dce-8a9b-5ccfce2b9876", "version": "1.0"},
            "state": state,
            "version": new_etag(),
            "etag": new_etag(),
            "createdAt": created,
            "updatedAt": created,
            "createdClient": self.client_id,
            "sandboxName": self.sandbox_name,
            "imsOrgId": self.org_id,
            "sourceConnectionIds": [source["id"]],
            "targetConnectionIds": [target["id"]],
            "transformations": transformations,
            "scheduleParams": {"startTime": str(created // 1000), "frequency": "once"},
            "inheritedAttributes": {"properties": {"isSourceFlow": True}},
        }
        with self.lock:
            self.flows[flow_id] = flow
            self.flow_options[flow_id] = {**options, "kind": kind}
            self.connections["sourceConnections"][source["id"]] = source
            self.connections["targetConnections"][target["id"]] = target
            self.connections["connectionSpecs"][spec["id"]] = spec
        return flow_id

    def get_connection(self, collection: str, ident: str) -> Reply:
        """``GET /sourceConnections/{id}``, ``/targetConnections/{id}``, ``/connectionSpecs/{id}``."""
        with self.lock:
            item = self.connections[collection].get(ident)
            if item is None:
                what = {"sourceConnections": "source connection", "targetConnections": "target connection"}
                kind = what.get(collection, "connection spec")
                detail = f"No {kind} {ident} in sandbox {self.sandbox_name}."
                raise fail(404, CONNECTION_NOT_FOUND, detail)
            return Reply(200, {"items": [copy.deepcopy(item)]})

    def flow_delta_column(self, flow: dict[str, Any]) -> str | None:
        for item in flow["transformations"]:
            if item.get("name") == "Copy":
                return field_value(item, "params.deltaColumn.name")
        return None

    def get_flow(self, flow_id: str) -> Reply:
        with self.lock:
            flow = self.flows.get(flow_id)
            if flow is None or flow["state"] == "deleted":
                raise fail(400, FLOW_NOT_FOUND, f"Flow {flow_id} not found in sandbox {self.sandbox_name}.")
            return Reply(200, {"items": [copy.deepcopy(flow)]})

    # ----- runs ----------------------------------------------------------------------------------
    def create_run(self, body: Any) -> Reply:
        if not isinstance(body, dict):
            raise fail(400, BAD_REQUEST, "The request body must be a JSON object with flowId and params.")
        flow_id = body.get("flowId")
        if not isinstance(flow_id, str) or not flow_id:
            raise fail(400, BAD_REQUEST, f"flowId is required and must be a string, got {flow_id!r}.")
        params = body.get("params")
        if not isinstance(params, dict):
            raise fail(
                400, BAD_REQUEST, "params is required: an object with windowStartTime and windowEndTime."
            )
        with self.lock:
            flow = self.flows.get(flow_id)
            if flow is None or flow["state"] == "deleted":
                raise fail(
                    400,
                    FLOW_NOT_FOUND,
                    f"Flow {flow_id} not found in sandbox {self.sandbox_name}; check the flowId and sandbox.",
                )
            if flow["state"] != "enabled":
                raise fail(
                    400, FLOW_DISABLED, f"Flow {flow_id} is {flow['state']}; enable it to create runs."
                )
            if not self.flow_options[flow_id].get("on_demand", True):
                raise fail(400, NOT_ON_DEMAND, f"Flow {flow_id} does not support on-demand runs.")
            _seconds_param(params, "startTime", required=False)
            start = _seconds_param(params, "windowStartTime", required=True)
            end = _seconds_param(params, "windowEndTime", required=True)
            assert start is not None and end is not None
            if start >= end:
                raise fail(
                    400,
                    BAD_REQUEST,
                    f"windowStartTime ({start}) must be before windowEndTime ({end}); "
                    "the window is empty or inverted.",
                )
            self._check_delta_column(flow, params.get("deltaColumn"))
            run = self._new_run(flow, params, start, end)
            shape = self.create_response_shape
            if shape == "bare":
                return Reply(201, {"id": run["id"], "etag": run["etag"]})
            if shape == "run":
                return Reply(200, copy.deepcopy(run))
            return Reply(200, {"items": [{"id": run["id"], "etag": run["etag"]}]})

    def _check_delta_column(self, flow: dict[str, Any], delta: Any) -> None:
        if delta is None:
            return
        kind = self.flow_options[flow["id"]]["kind"]
        if kind == "file":
            raise fail(
                400,
                BAD_REQUEST,
                f"deltaColumn is for table-based sources only; flow {flow['id']} reads files: "
                "send no deltaColumn.",
            )
        name = delta.get("name") if isinstance(delta, dict) else None
        if not isinstance(name, str) or not name:
            raise fail(400, BAD_REQUEST, f'deltaColumn must be {{"name": "<column>"}}, got {delta!r}.')
        current = self.flow_delta_column(flow)
        if current is None:
            for item in flow["transformations"]:
                if item.get("name") == "Copy":
                    item.setdefault("params", {})["deltaColumn"] = {"name": name}
            flow["etag"] = new_etag()
            flow["updatedAt"] = now_ms()
        elif current != name:
            raise fail(
                400,
                BAD_REQUEST,
                f"deltaColumn cannot be changed: flow {flow['id']} already uses {current!r}, "
                f"request has {name!r}. Send the same name or none.",
            )

    def _new_run(self, flow: dict[str, Any], params: dict[str, Any], start: int, end: int) -> dict[str, Any]:
        options = self.flow_options[flow["id"]]
        outcome = check_outcome(options.get("outcome") or self.outcome)
        errors = options.get("errors")
        if errors is None:
            errors = DEFAULT_ERRORS if outcome != "success" else []
        polls = options.get("polls_to_finish")
        seconds = options.get("seconds_to_finish")
        self._seq += 1
        meta = RunMeta(
            seq=self._seq,
            created=time.monotonic(),
            flow_kind=options["kind"],
            outcome=outcome,
            polls_to_finish=self.polls_to_finish if polls is None else polls,
            seconds_to_finish=self.seconds_to_finish if seconds is None else seconds,
            errors=copy.deepcopy(list(errors)),
            waiting_statuses=[*options.get("extra_statuses", ()), "inProgress"],
            status_case=options.get("status_case"),
            final_status=options.get("final_status"),
        )
        created = now_ms()
        run_id = str(uuid.uuid4())
        window = {"windowStart": start * 1000, "windowEnd": end * 1000}
        status = cased("scheduled", meta.status_case)
        run = {
            "id": run_id,
            "flowId": flow["id"],
            "createdAt": created,
            "updatedAt": created,
            "createdClient": self.client_id,
            "sandboxName": self.sandbox_name,
            "imsOrgId": self.org_id,
            "etag": new_etag(),
            "params": copy.deepcopy(params),
            "metrics": {
                "durationSummary": {},
                "sizeSummary": {"inputBytes": -1, "outputBytes": -1},
                "recordSummary": {"inputRecordCount": 0, "outputRecordCount": 0, "failedRecordCount": 0},
                "fileSummary": {"inputFileCount": 0, "outputFileCount": 0, "failedFileCount": 0},
                "statusSummary": {"status": status, "errors": []},
            },
            "activities": [
                {
                    "id": str(uuid.uuid4()),
                    "name": "Copy Activity",
                    "updatedAt": created,
                    "durationSummary": {"extensions": window},
                    "statusSummary": {"status": status, "errors": [], "extensions": {"errors": []}},
                }
            ],
        }
        self.runs[run_id] = run
        self.meta[run_id] = meta
        meta.history.append((time.monotonic(), copy.deepcopy(run)))
        flow["lastRunDetails"] = {"id": run_id, "state": status, "startedAtUTC": created}
        return run

    def _advance(self, run_id: str, *, poll: bool) -> None:
        """Bring a run's JSON up to date; ``poll`` counts one ``GET /runs/{id}``."""
        etag = self.runs[run_id]["etag"]
        self._move(run_id, poll=poll)
        run = self.runs[run_id]
        if run["etag"] != etag:
            self.meta[run_id].history.append((time.monotonic(), copy.deepcopy(run)))

    def _move(self, run_id: str, *, poll: bool) -> None:
        run, meta = self.runs[run_id], self.meta[run_id]
        if meta.finished:
            return
        waiting = meta.waiting_statuses
        if meta.seconds_to_finish is not None:
            elapsed = time.monotonic() - meta.created
            if elapsed >= meta.seconds_to_finish:
                self._finish(run, meta)
                return
            index = int(elapsed / meta.seconds_to_finish * len(waiting)) if meta.seconds_to_finish else 0
        else:
            if not poll:
                return
            meta.polls += 1
            if meta.polls > meta.polls_to_finish:
                self._finish(run, meta)
                return
            index = meta.polls - 1
        self._set_status(run, meta, waiting[min(index, len(waiting) - 1)])

    def _set_status(self, run: dict[str, Any], meta: RunMeta, status: str) -> None:
        shown = cased(status, meta.status_case)
        summary = run["metrics"]["statusSummary"]
        if summary["status"] == shown:
            return
        stamp = now_ms()
        summary["status"] = shown
        run["activities"][0]["statusSummary"]["status"] = shown
        for duration in (run["metrics"]["durationSummary"], run["activities"][0]["durationSummary"]):
            duration.setdefault("startedAtUTC", stamp)
        run["updatedAt"] = run["activities"][0]["updatedAt"] = stamp
        run["etag"] = new_etag()
        flow = self.flows.get(run["flowId"])
        if flow is not None and flow.get("lastRunDetails", {}).get("id") == run["id"]:
            flow["lastRunDetails"]["state"] = shown

    def _finish(self, run: dict[str, Any], meta: RunMeta) -> None:
        self._set_status(run, meta, "inProgress")
        meta.finished = True
        outcome = meta.outcome
        self._set_status(run, meta, meta.final_status or outcome)
        stamp = now_ms()
        metrics = run["metrics"]
        activity = run["activities"][0]
        inputs, outputs, failed = _RECORDS[outcome]
        records = {"inputRecordCount": inputs, "outputRecordCount": outputs, "failedRecordCount": failed}
        files = {"inputFileCount": 0, "outputFileCount": 0, "failedFileCount": 0}
        if meta.flow_kind == "file":
            files = {
                "inputFileCount": 2,
                "outputFileCount": 2 if outcome == "success" else (1 if outcome == "partialSuccess" else 0),
                "failedFileCount": 0 if outcome == "success" else (1 if outcome == "partialSuccess" else 2),
            }
        sizes = {"inputBytes": inputs * 120, "outputBytes": outputs * 100 if outputs else -1}
        for target in (metrics, activity):
            target["recordSummary"] = dict(records)
            target["fileSummary"] = dict(files)
            target["sizeSummary"] = dict(sizes)
            if outcome != "failed" or meta.final_status:
                target["durationSummary"]["completedAtUTC"] = stamp
        metrics["statusSummary"]["errors"] = copy.deepcopy(meta.errors)
        activity["statusSummary"]["errors"] = copy.deepcopy(meta.errors)
        activity["statusSummary"]["extensions"]["errors"] = copy.deepcopy(meta.errors)
        flow = self.flows.get(run["flowId"])
        last = (flow or {}).get("lastRunDetails", {})
        if last.get("id") == run["id"] and outcome != "failed":
            last["completedAtUTC"] = stamp

    def get_run(self, run_id: str) -> Reply:
        with self.lock:
            if run_id not in self.runs:
                raise fail(404, RUN_NOT_FOUND, f"Run {run_id} not found in sandbox {self.sandbox_name}.")
            self._advance(run_id, poll=True)
            return Reply(200, {"items": [copy.deepcopy(self.runs[run_id])]})

    def list_runs(self, query: dict[str, list[str]]) -> Reply:
        """``GET /runs``: filter, order and page; never counts as a poll."""
        parsed = RunQuery.parse(query)
        refuse_filters(parsed.filters, self.refused_filter_fields)
        with self.lock:
            for run_id in self.runs:
                self._advance(run_id, poll=False)
            selected = parsed.select(self._listed(), lambda run: self.meta[run["id"]].seq)
            if parsed.count:
                return Reply(200, {"count": len(selected)})
            start, size = parsed.offset, parsed.page_size(self.page_size)
            page = [copy.deepcopy(run) for run in selected[start : start + size]]
            links: dict[str, Any] = {}
            if start + size < len(selected):
                path = parsed.next_path(start + size)
                links["next"] = {"href": self.base_url + path if self.next_link_style == "absolute" else path}
            return Reply(200, {"items": page, "_links": links})

    def _listed(self) -> list[dict[str, Any]]:
        """The runs as the list shows them: as they were :attr:`list_lag` seconds ago (a run created
        since then is not listed yet), or as they are when there is no lag."""
        if self.list_lag <= 0:
            return list(self.runs.values())
        as_of = time.monotonic() - self.list_lag
        shown = []
        for meta in self.meta.values():
            seen = [run for stamp, run in meta.history if stamp <= as_of]
            if seen:
                shown.append(seen[-1])
        return shown

    def runs_for_flow(self, flow_id: str) -> list[dict[str, Any]]:
        with self.lock:
            found = [(self.meta[i].seq, r) for i, r in self.runs.items() if r["flowId"] == flow_id]
            return [copy.deepcopy(r) for _, r in sorted(found, key=lambda pair: pair[0])]


def check_outcome(outcome: str) -> str:
    """Return the documented spelling of ``outcome``, or raise naming the valid values."""
    canonical = OUTCOMES.get(str(outcome).lower())
    if canonical is None:
        raise ValueError(f"outcome must be one of {sorted(OUTCOMES.values())}, got {outcome!r}.")
    return canonical


def check_shape(shape: str) -> str:
    if shape not in CREATE_SHAPES:
        raise ValueError(f"create_response_shape must be one of {CREATE_SHAPES}, got {shape!r}.")
    return shape


def check_polls(polls_to_finish: int) -> int:
    if polls_to_finish < 0:
        raise ValueError(f"polls_to_finish must be >= 0, got {polls_to_finish}.")
    return polls_to_finish


def check_flow_options(status_case: str | None, extra_statuses: Sequence[str]) -> None:
    if status_case not in STATUS_CASES:
        raise ValueError(f"status_case must be one of {STATUS_CASES}, got {status_case!r}.")
    if isinstance(extra_statuses, str):
        raise ValueError("extra_statuses must be a list of strings, e.g. ['queued'].")
