"""The emulator over real HTTP: IMS, auth checks, runs, listing, flows, faults, inspection, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import requests

from airflow_provider_flowservice.testing import DEFAULT_FLOW_ID, FlowServiceEmulator

PREFIX = "/data/foundation/flowservice"
START, END = 1651584991, 1651585956
TIMEOUT = 5


class Api:
    """A minimal well-behaved client: one token, the four headers, JSON bodies."""

    def __init__(self, emulator: FlowServiceEmulator) -> None:
        self.emu = emulator
        self.session = requests.Session()
        self.token = self.fetch_token().json()["access_token"]

    def fetch_token(self, **override: str) -> requests.Response:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.emu.client_id,
            "client_secret": self.emu.client_secret,
            "scope": "openid,AdobeID",
            **override,
        }
        return self.session.post(self.emu.ims_token_url, data=form, timeout=TIMEOUT)

    def headers(self, **override: str | None) -> dict[str, str]:
        headers: dict[str, str | None] = {
            "Authorization": f"Bearer {self.token}",
            "x-api-key": self.emu.client_id,
            "x-gw-ims-org-id": self.emu.org_id,
            "x-sandbox-name": self.emu.sandbox_name,
            **override,
        }
        return {k: v for k, v in headers.items() if v is not None}

    def get(self, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> requests.Response:
        return self.session.get(
            self.emu.url + PREFIX + path, headers=headers or self.headers(), timeout=TIMEOUT, **kwargs
        )

    def post_run(self, flow_id: str, start: Any = START, end: Any = END, **params: Any) -> requests.Response:
        body = {"flowId": flow_id, "params": {"windowStartTime": start, "windowEndTime": end, **params}}
        return self.session.post(
            self.emu.url + PREFIX + "/runs", json=body, headers=self.headers(), timeout=TIMEOUT
        )

    def create(self, flow_id: str, **params: Any) -> str:
        response = self.post_run(flow_id, **params)
        assert response.status_code == 200, response.text
        return response.json()["items"][0]["id"]

    def run(self, run_id: str) -> dict[str, Any]:
        response = self.get(f"/runs/{run_id}")
        assert response.status_code == 200, response.text
        return response.json()["items"][0]

    def status(self, run_id: str) -> str:
        return self.run(run_id)["metrics"]["statusSummary"]["status"]


@pytest.fixture
def emu(flow_service_emulator: FlowServiceEmulator) -> FlowServiceEmulator:
    return flow_service_emulator


@pytest.fixture
def api(emu: FlowServiceEmulator) -> Api:
    return Api(emu)


def flow_code(response: requests.Response) -> str:
    """``FLOW-1430-400`` -> ``1430-400``; also checks the Flow Service error format."""
    body = response.json()
    assert body["status"] == response.status_code
    assert body["report"]["request-id"] == response.headers["x-request-id"]
    assert body["title"] and body["report"]["detailed-message"] == body["errorMessage"]
    return body["type"].rsplit("FLOW-", 1)[1]


# ----- IMS ------------------------------------------------------------------------------------------
def test_token_issue_counts_and_records(emu: FlowServiceEmulator, api: Api) -> None:
    response = api.fetch_token()
    body = response.json()
    assert response.status_code == 200
    assert body["token_type"] == "bearer" and body["expires_in"] == 86399
    assert body["access_token"] != api.token
    assert emu.tokens_issued == [api.token, body["access_token"]]
    assert emu.token_requests == 2
    recorded = emu.requests[-1]
    assert recorded.path == "/ims/token/v3" and recorded.body["scope"] == "openid,AdobeID"
    assert emu.client_secret in recorded.raw
    assert emu.client_secret not in repr(recorded) and api.token not in repr(emu.requests)


@pytest.mark.parametrize(
    ("override", "status", "error", "fragment"),
    [
        ({"client_id": "nope"}, 401, "invalid_client", "client_id"),
        ({"client_secret": "nope"}, 401, "invalid_client", "client_secret"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", "client_credentials"),
    ],
)
def test_token_refused(api: Api, override: dict[str, str], status: int, error: str, fragment: str) -> None:
    response = api.fetch_token(**override)
    assert response.status_code == status
    assert response.json()["error"] == error and fragment in response.json()["error_description"]
    assert len(api.emu.tokens_issued) == 1


def test_token_expires_after_ttl() -> None:
    with FlowServiceEmulator(token_ttl=0.3) as emulator:
        api = Api(emulator)
        flow = emulator.add_flow()
        assert api.get(f"/flows/{flow}").status_code == 200
        time.sleep(0.4)
        response = api.get(f"/flows/{flow}")
        assert response.status_code == 401 and response.json()["error_code"] == "401013"


def test_revoke_tokens(emu: FlowServiceEmulator, api: Api) -> None:
    flow = emu.add_flow()
    emu.revoke_tokens()
    assert api.get(f"/flows/{flow}").json() == {"error_code": "401013", "message": "Oauth token is not valid"}
    api.token = api.fetch_token().json()["access_token"]
    assert api.get(f"/flows/{flow}").status_code == 200


# ----- auth headers -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "status", "gateway_code", "flow_error"),
    [
        ({"Authorization": None}, 403, "403010", None),
        ({"Authorization": "Bearer not-a-token"}, 401, "401013", None),
        ({"Authorization": "Basic abc"}, 401, "401013", None),
        ({"x-api-key": None}, 403, "403000", None),
        ({"x-api-key": "other"}, 403, "403003", None),
        ({"x-gw-ims-org-id": None}, 401, None, "2001-401"),
        ({"x-gw-ims-org-id": "OTHER@AdobeOrg"}, 401, None, "2002-401"),
        ({"x-sandbox-name": None}, 400, None, "2105-400"),
        ({"x-sandbox-name": "dev"}, 400, None, "2105-400"),
    ],
)
def test_auth_headers(
    emu: FlowServiceEmulator,
    api: Api,
    override: dict[str, str | None],
    status: int,
    gateway_code: str | None,
    flow_error: str | None,
) -> None:
    flow = emu.add_flow()
    response = api.get(f"/flows/{flow}", headers=api.headers(**override))
    assert response.status_code == status
    assert response.headers["x-request-id"]
    if gateway_code:
        assert response.json()["error_code"] == gateway_code and response.json()["message"]
    else:
        assert flow_code(response) == flow_error


def test_post_needs_json_content_type(emu: FlowServiceEmulator, api: Api) -> None:
    flow = emu.add_flow()
    body = json.dumps({"flowId": flow, "params": {"windowStartTime": START, "windowEndTime": END}})
    response = api.session.post(
        emu.url + PREFIX + "/runs",
        data=body,
        headers={**api.headers(), "Content-Type": "text/plain"},
        timeout=5,
    )
    assert response.status_code == 415 and "application/json" in response.json()["report"]["detailed-message"]
    assert emu.runs == {}


def test_unknown_route_and_method(api: Api) -> None:
    assert flow_code(api.get("/connections")) == "1000-404"
    response = api.session.delete(api.emu.url + PREFIX + "/runs/x", headers=api.headers(), timeout=5)
    assert response.status_code == 405


# ----- create -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("shape", "status"), [("items", 200), ("bare", 201), ("run", 200)])
def test_create_response_shapes(emu: FlowServiceEmulator, api: Api, shape: str, status: int) -> None:
    flow = emu.add_flow()
    emu.create_response_shape = shape
    response = api.post_run(flow)
    assert response.status_code == status
    body = response.json()
    created = body["items"][0] if shape == "items" else body
    run = emu.runs[created["id"]]
    assert created["etag"] == run["etag"]
    if shape == "run":
        assert body["metrics"]["statusSummary"]["status"] == "scheduled" and body["flowId"] == flow
    else:
        assert set(created) == {"id", "etag"}


def test_create_shape_at_construction() -> None:
    with FlowServiceEmulator(create_response_shape="bare") as emulator:
        response = Api(emulator).post_run(emulator.add_flow())
        assert response.status_code == 201 and set(response.json()) == {"id", "etag"}
    with pytest.raises(ValueError, match="create_response_shape"):
        FlowServiceEmulator(create_response_shape="list")


# ----- progression --------------------------------------------------------------------------------------
def test_status_moves_by_polls_and_listing_does_not_poll(emu: FlowServiceEmulator, api: Api) -> None:
    flow = emu.add_flow()
    run_id = api.create(flow, startTime="1651584000")
    for _ in range(3):
        listed = api.get("/runs", params={"property": f"flowId=={flow}"}).json()["items"]
        assert listed[0]["metrics"]["statusSummary"]["status"] == "scheduled"
    assert [api.status(run_id) for _ in range(4)] == ["inProgress", "inProgress", "success", "success"]
    run = api.run(run_id)
    assert run["params"] == {"windowStartTime": START, "windowEndTime": END, "startTime": "1651584000"}
    duration = run["metrics"]["durationSummary"]
    assert run["createdAt"] <= duration["startedAtUTC"] <= duration["completedAtUTC"]
    assert (
        run["metrics"]["recordSummary"]["inputRecordCount"]
        == run["metrics"]["recordSummary"]["outputRecordCount"]
    )
    assert run["metrics"]["statusSummary"]["errors"] == []
    activity = run["activities"][0]
    assert activity["durationSummary"]["extensions"] == {"windowStart": START * 1000, "windowEnd": END * 1000}
    assert activity["statusSummary"]["status"] == "success"
    flow_json = api.get(f"/flows/{flow}").json()["items"][0]
    assert flow_json["lastRunDetails"]["id"] == run_id and flow_json["lastRunDetails"]["state"] == "success"


def test_a_lagging_list_shows_runs_as_they_were(emu: FlowServiceEmulator, api: Api) -> None:
    """``list_lag``: the list shows each run as it was that long ago, a newer run not at all."""
    flow = emu.add_flow()
    emu.list_lag = 0.4
    run_id = api.create(flow)

    def listed() -> list[Any]:
        return api.get("/runs", params={"property": f"flowId=={flow}"}).json()["items"]

    assert listed() == []  # created less than the lag ago
    time.sleep(0.5)
    assert [api.status(run_id) for _ in range(3)] == ["inProgress", "inProgress", "success"]
    (shown,) = listed()
    assert shown["id"] == run_id and shown["metrics"]["statusSummary"]["status"] == "scheduled"
    time.sleep(0.5)
    assert listed()[0]["metrics"]["statusSummary"]["status"] == "success"
    emu.list_lag = 0
    with pytest.raises(ValueError, match="list_lag"):
        emu.list_lag = -1


def test_polls_per_flow_override_and_zero(emu: FlowServiceEmulator, api: Api) -> None:
    quick = api.create(emu.add_flow(polls_to_finish=0))
    assert api.status(quick) == "success"
    emu.polls_to_finish = 1
    default = api.create(emu.add_flow())
    assert [api.status(default), api.status(default)] == ["inProgress", "success"]


def test_status_moves_by_seconds(api: Api) -> None:
    emu = api.emu
    flow = emu.add_flow(seconds_to_finish=0.4)
    run_id = api.create(flow)
    assert [api.status(run_id) for _ in range(5)] == ["inProgress"] * 5
    time.sleep(0.45)
    listed = api.get("/runs", params={"property": f"flowId=={flow}"}).json()["items"][0]
    assert listed["metrics"]["statusSummary"]["status"] == "success"
    assert api.status(run_id) == "success"


def test_default_seconds_to_finish() -> None:
    with FlowServiceEmulator(seconds_to_finish=0) as emulator:
        api = Api(emulator)
        assert api.status(api.create(emulator.add_flow())) == "success"


def test_failed_run_carries_errors_and_no_completion(emu: FlowServiceEmulator, api: Api) -> None:
    run = api.run(api.create(emu.add_flow(outcome="failed", polls_to_finish=0)))
    summary = run["metrics"]["statusSummary"]
    assert summary["status"] == "failed"
    assert summary["errors"][0]["code"] == "CONNECTOR-2001-500"
    activity = run["activities"][0]["statusSummary"]
    assert activity["errors"] == summary["errors"] == activity["extensions"]["errors"]
    assert "completedAtUTC" not in run["metrics"]["durationSummary"]
    assert "startedAtUTC" in run["metrics"]["durationSummary"]


def test_partial_success_and_custom_errors(emu: FlowServiceEmulator, api: Api) -> None:
    errors = [{"code": "INGEST-1212-400", "message": "5 rows failed"}]
    partial = api.run(api.create(emu.add_flow(outcome="partialSuccess", polls_to_finish=0, errors=errors)))
    assert partial["metrics"]["statusSummary"] == {"status": "partialSuccess", "errors": errors}
    assert partial["metrics"]["recordSummary"]["failedRecordCount"] > 0
    assert "completedAtUTC" in partial["metrics"]["durationSummary"]
    default_partial = api.run(api.create(emu.add_flow(outcome="partialSuccess", polls_to_finish=0)))
    assert default_partial["metrics"]["statusSummary"]["errors"][0]["code"] == "CONNECTOR-2001-500"
    success = api.run(api.create(emu.add_flow(polls_to_finish=0, errors=errors)))
    assert success["metrics"]["statusSummary"] == {"status": "success", "errors": errors}


def test_emulator_outcome_default() -> None:
    with FlowServiceEmulator(outcome="failed", polls_to_finish=0) as emulator:
        api = Api(emulator)
        assert api.status(api.create(emulator.add_flow())) == "failed"
        emulator.outcome = "partialSuccess"
        assert api.status(api.create(emulator.add_flow())) == "partialSuccess"
        with pytest.raises(ValueError, match="outcome"):
            emulator.outcome = "done"


def test_status_case_and_extra_statuses(emu: FlowServiceEmulator, api: Api) -> None:
    titled = api.create(emu.add_flow(outcome="failed", polls_to_finish=1, status_case="title"))
    assert [api.status(titled), api.status(titled)] == ["InProgress", "Failed"]
    queued = api.create(emu.add_flow(polls_to_finish=3, extra_statuses=["queued"]))
    assert [api.status(queued) for _ in range(4)] == ["queued", "inProgress", "inProgress", "success"]
    with pytest.raises(ValueError, match="status_case"):
        emu.add_flow(status_case="camel")


# ----- validation -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"windowStartTime": None}, "windowStartTime is required"),
        ({"windowEndTime": None}, "windowEndTime is required"),
        ({"windowStartTime": "yesterday"}, "'yesterday'"),
        ({"windowStartTime": 1651584991.5}, "1651584991.5"),
        ({"windowStartTime": True}, "True"),
        ({"windowStartTime": -5}, "-5"),
        ({"windowEndTime": 1651585956000}, "looks like milliseconds"),
        ({"windowStartTime": END, "windowEndTime": START}, "empty or inverted"),
        ({"windowStartTime": START, "windowEndTime": str(START)}, "empty or inverted"),
        ({"startTime": "soon"}, "params.startTime"),
    ],
)
def test_window_validation(emu: FlowServiceEmulator, api: Api, params: dict[str, Any], fragment: str) -> None:
    flow = emu.add_flow()
    body = {"windowStartTime": START, "windowEndTime": END, **params}
    body = {k: v for k, v in body.items() if v is not None}
    response = api.session.post(
        emu.url + PREFIX + "/runs", json={"flowId": flow, "params": body}, headers=api.headers(), timeout=5
    )
    assert response.status_code == 400
    assert flow_code(response) == "1001-400"
    assert fragment in response.json()["report"]["detailed-message"]
    assert emu.runs == {}


def test_window_strings_accepted_and_unknown_flow(emu: FlowServiceEmulator, api: Api) -> None:
    flow = emu.add_flow()
    assert api.post_run(flow, start=str(START), end=str(END)).status_code == 200
    response = api.post_run("3abea21c-7e36-4be1-bec1-d3bad0e3e0de")
    assert response.status_code == 400 and flow_code(response) == "1430-400"
    assert "3abea21c" in response.json()["report"]["detailed-message"]
    missing = api.session.post(
        emu.url + PREFIX + "/runs", json={"params": {}}, headers=api.headers(), timeout=5
    )
    assert missing.status_code == 400 and "flowId" in missing.json()["errorMessage"]
    disabled = api.post_run(emu.add_flow(state="disabled"))
    assert disabled.status_code == 400 and "disabled" in disabled.json()["errorMessage"]


def test_delta_column_table_flow(emu: FlowServiceEmulator, api: Api) -> None:
    flow = emu.add_flow(kind="table")
    assert api.post_run(flow).status_code == 200
    assert api.post_run(flow, deltaColumn={"name": "updatedAt"}).status_code == 200
    copy_step = api.get(f"/flows/{flow}").json()["items"][0]["transformations"][0]
    assert copy_step == {"name": "Copy", "params": {"deltaColumn": {"name": "updatedAt"}}}
    assert api.post_run(flow, deltaColumn={"name": "updatedAt"}).status_code == 200
    assert api.post_run(flow).status_code == 200
    changed = api.post_run(flow, deltaColumn={"name": "DOB"})
    assert changed.status_code == 400
    assert "cannot be changed" in changed.json()["errorMessage"] and "'DOB'" in changed.json()["errorMessage"]
    assert api.post_run(flow, deltaColumn={"nom": "x"}).status_code == 400
    assert len(emu.runs_for_flow(flow)) == 4


def test_delta_column_preset_and_file_flow(emu: FlowServiceEmulator, api: Api) -> None:
    preset = emu.add_flow(delta_column="modified")
    assert api.post_run(preset, deltaColumn={"name": "other"}).status_code == 400
    assert api.post_run(preset, deltaColumn={"name": "modified"}).status_code == 200
    files = emu.add_flow(kind="file")
    refused = api.post_run(files, deltaColumn={"name": "modified"})
    assert refused.status_code == 400 and "file" in refused.json()["errorMessage"]
    assert api.post_run(files).status_code == 200
    assert all(t["name"] != "Copy" for t in emu.flows[files]["transformations"])
    with pytest.raises(ValueError, match="kind"):
        emu.add_flow(kind="stream")


# ----- reads and listing ---------------------------------------------------------------------------------
def test_get_flow_and_unknown_ids(emu: FlowServiceEmulator, api: Api) -> None:
    flow = emu.add_flow(name="CRM accounts")
    item = api.get(f"/flows/{flow}").json()["items"][0]
    assert item["id"] == flow and item["name"] == "CRM accounts" and item["state"] == "enabled"
    assert item["flowSpec"]["id"] and item["scheduleParams"]["frequency"] == "once" and item["etag"]
    unknown_flow = api.get("/flows/nope")
    assert unknown_flow.status_code == 400 and flow_code(unknown_flow) == "1430-400"
    unknown_run = api.get("/runs/nope")
    assert unknown_run.status_code == 404 and flow_code(unknown_run) == "1439-404"


def test_list_filters_order_and_count(emu: FlowServiceEmulator, api: Api) -> None:
    good, bad = emu.add_flow(polls_to_finish=0), emu.add_flow(outcome="failed", polls_to_finish=0)
    good_runs = [api.create(good) for _ in range(3)]
    bad_runs = [api.create(bad) for _ in range(2)]
    api.status(bad_runs[0])
    listed = api.get("/runs", params={"property": f"flowId=={good}", "orderby": "createdAt"}).json()
    assert [r["id"] for r in listed["items"]] == good_runs and listed["_links"] == {}
    newest_first = api.get("/runs", params={"property": f"flowId=={good}", "orderby": "-createdAt"}).json()
    assert [r["id"] for r in newest_first["items"]] == good_runs[::-1]
    both = {"property": [f"flowId=={bad}", "metrics.statusSummary.status==failed"]}
    assert [r["id"] for r in api.get("/runs", params=both).json()["items"]] == [bad_runs[0]]
    assert api.get("/runs", params={**both, "count": "true"}).json() == {"count": 1}
    assert api.get("/runs", params={"count": "true"}).json() == {"count": 5}
    assert api.get("/runs", params={"count": "true", "limit": "2"}).status_code == 400
    assert api.get("/runs", params={"property": "flowId~~x"}).status_code == 400
    since = emu.runs[good_runs[1]]["createdAt"]
    newer = api.get("/runs", params={"property": [f"flowId=={good}", f"createdAt>={since}"]}).json()
    assert {r["id"] for r in newer["items"]} >= set(good_runs[1:])


def test_list_pagination(emu: FlowServiceEmulator, api: Api) -> None:
    flow = emu.add_flow()
    created = [api.create(flow) for _ in range(7)]
    emu.page_size = 3
    seen: list[str] = []
    url = emu.url + PREFIX + "/runs?" + f"property=flowId=={flow}&orderby=createdAt"
    for _ in range(5):
        body = api.session.get(url, headers=api.headers(), timeout=5).json()
        seen += [r["id"] for r in body["items"]]
        if not body["_links"]:
            break
        url = body["_links"]["next"]["href"]
        assert "continuationToken=" in url and url.startswith(emu.url)
    assert seen == created
    limited = api.get("/runs", params={"property": f"flowId=={flow}", "limit": "2"}).json()
    assert len(limited["items"]) == 2 and "limit=2" in limited["_links"]["next"]["href"]
    assert len(api.get("/runs", params={"limit": "50"}).json()["items"]) == 3
    emu.next_link_style = "path"
    assert api.get("/runs").json()["_links"]["next"]["href"].startswith(PREFIX + "/runs?")
    assert api.get("/runs", params={"continuationToken": "garbage"}).status_code == 400
    assert api.get("/runs", params={"limit": "0"}).status_code == 400


# ----- faults -----------------------------------------------------------------------------------------------
def test_fault_429_with_and_without_retry_after(emu: FlowServiceEmulator, api: Api) -> None:
    flow = emu.add_flow()
    emu.inject("429", retry_after="2")
    emu.inject("429", retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    emu.inject("429")
    first, second, third = (api.get(f"/flows/{flow}") for _ in range(3))
    assert first.status_code == 429 and first.headers["Retry-After"] == "2"
    assert first.json()["error_code"] == "429050"
    assert second.headers["Retry-After"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert third.status_code == 429 and "Retry-After" not in third.headers
    assert api.get(f"/flows/{flow}").status_code == 200
    assert [r.fault for r in emu.requests[-4:]] == ["429", "429", "429", None]


@pytest.mark.parametrize(
    ("kind", "code"), [("500", "1101-500"), ("502", "1102-502"), ("503", "1103-503"), ("504", "1104-504")]
)
def test_fault_server_errors(emu: FlowServiceEmulator, api: Api, kind: str, code: str) -> None:
    flow = emu.add_flow()
    emu.inject(kind, method="POST", path="/runs", times=2)
    assert api.get(f"/flows/{flow}").status_code == 200
    responses = [api.post_run(flow) for _ in range(3)]
    assert [r.status_code for r in responses] == [int(kind), int(kind), 200]
    assert flow_code(responses[0]) == code
    assert len(emu.runs) == 1


def test_fault_slow_gives_client_timeout(emu: FlowServiceEmulator, api: Api) -> None:
    flow = emu.add_flow()
    emu.inject("slow", delay=0.6, path="/flows")
    with pytest.raises(requests.ReadTimeout):
        api.session.get(emu.url + PREFIX + f"/flows/{flow}", headers=api.headers(), timeout=0.2)
    emu.inject("slow", delay=0.2)
    started = time.monotonic()
    assert api.get(f"/flows/{flow}").status_code == 200
    assert time.monotonic() - started >= 0.2


def test_fault_drop_does_not_create(emu: FlowServiceEmulator, api: Api) -> None:
    flow = emu.add_flow()
    emu.inject("drop", method="POST")
    with pytest.raises(requests.ConnectionError):
        api.post_run(flow)
    assert emu.runs == {}
    assert api.post_run(flow).status_code == 200


def test_fault_drop_after_create_creates(emu: FlowServiceEmulator, api: Api) -> None:
    flow = emu.add_flow()
    emu.inject("drop_after_create", method="POST", path="/runs")
    with pytest.raises(requests.ConnectionError):
        api.post_run(flow)
    assert len(emu.runs_for_flow(flow)) == 1
    assert emu.requests[-1].fault == "drop_after_create"


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("500_after_create", "1101-500"),
        ("502_after_create", "1102-502"),
        ("503_after_create", "1103-503"),
        ("504_after_create", "1104-504"),
    ],
)
def test_fault_server_error_after_create_creates_the_run(
    emu: FlowServiceEmulator, api: Api, kind: str, code: str
) -> None:
    """The gateway answers 5xx although the run was created (the likeliest real duplicate source)."""
    flow = emu.add_flow()
    emu.inject(kind, method="POST", path="/runs")
    response = api.post_run(flow)
    assert response.status_code == int(kind[:3]) and flow_code(response) == code
    assert len(emu.runs_for_flow(flow)) == 1  # created all the same
    assert emu.requests[-1].fault == kind
    assert api.post_run(flow).status_code == 200  # one-shot
    assert len(emu.runs_for_flow(flow)) == 2


def test_unknown_fault_kind_names_the_after_create_kinds(emu: FlowServiceEmulator) -> None:
    with pytest.raises(ValueError, match="503_after_create"):
        emu.inject("503-after-create")


def test_fault_reset(emu: FlowServiceEmulator, api: Api) -> None:
    flow = emu.add_flow()
    emu.inject("reset")
    with pytest.raises(requests.ConnectionError) as caught:
        api.get(f"/flows/{flow}")
    assert "reset" in str(caught.value).lower()
    assert api.get(f"/flows/{flow}").status_code == 200


def test_fault_401_once(emu: FlowServiceEmulator, api: Api) -> None:
    flow = emu.add_flow()
    emu.inject("401", method="GET")
    assert api.get(f"/flows/{flow}").json()["error_code"] == "401013"
    assert api.get(f"/flows/{flow}").status_code == 200


def test_faults_hit_ims_only_by_path(emu: FlowServiceEmulator, api: Api) -> None:
    emu.inject("503")
    assert api.fetch_token().status_code == 200
    emu.clear_faults()
    emu.inject("503", path="/ims")
    assert api.fetch_token().status_code == 503
    assert api.fetch_token().status_code == 200
    assert emu.pending_faults == []
    with pytest.raises(ValueError, match="Unknown fault"):
        emu.inject("418")


def test_random_faults(emu: FlowServiceEmulator, api: Api) -> None:
    flow = emu.add_flow()
    emu.set_random_faults(1.0, ["503", "500"], seed=7)
    assert {api.get(f"/flows/{flow}").status_code for _ in range(6)} <= {500, 503}
    assert api.fetch_token().status_code == 200
    emu.set_random_faults(0.5, ["503"], seed=1)
    first = [api.get(f"/flows/{flow}").status_code for _ in range(20)]
    emu.set_random_faults(0.5, ["503"], seed=1)
    assert [api.get(f"/flows/{flow}").status_code for _ in range(20)] == first
    assert set(first) == {200, 503}
    emu.set_random_faults(1.0, ["slow"], delay=0.05)
    started = time.monotonic()
    assert api.get(f"/flows/{flow}").status_code == 200 and time.monotonic() - started >= 0.05
    emu.set_random_faults(0, [])
    assert all(api.get(f"/flows/{flow}").status_code == 200 for _ in range(5))


# ----- inspection, helpers, lifecycle ---------------------------------------------------------------------
def test_recorded_requests(emu: FlowServiceEmulator, api: Api) -> None:
    flow = emu.add_flow()
    emu.reset_requests()
    api.post_run(flow, deltaColumn={"name": "updatedAt"})
    api.get("/runs", params={"property": [f"flowId=={flow}", "x==1"], "limit": "5"})
    post, listing = emu.requests
    assert post.method == "POST" and post.path == PREFIX + "/runs"
    assert post.body["params"]["deltaColumn"] == {"name": "updatedAt"}
    assert (
        post.headers["x-api-key"] == emu.client_id and post.headers["authorization"] == f"Bearer {api.token}"
    )
    assert post.headers["content-type"] == "application/json" and post.time <= time.time()
    assert listing.query == {"property": [f"flowId=={flow}", "x==1"], "limit": ["5"]}
    assert api.token not in repr(emu.requests)


def test_connection_helpers(emu: FlowServiceEmulator) -> None:
    conn = json.loads(emu.connection_json(scope="openid"))
    assert conn["conn_type"] == "adobe_flow_service" and conn["host"] == emu.url
    assert (conn["login"], conn["password"]) == (emu.client_id, emu.client_secret)
    assert conn["extra"] == {**emu.connection_extra(), "scope": "openid"}
    assert emu.connection_extra()["ims_url"] == emu.url + "/ims/token/v3"
    from airflow.models.connection import Connection

    parsed = Connection(conn_id="x", uri=emu.connection_uri())
    assert parsed.conn_type == "adobe_flow_service"
    assert f"{parsed.host}:{parsed.port}" == emu.url
    assert (parsed.login, parsed.password) == (emu.client_id, emu.client_secret)
    assert parsed.extra_dejson == emu.connection_extra()


def test_flow_service_conn_fixture(flow_service_conn: FlowServiceEmulator) -> None:
    assert os.environ["AIRFLOW_CONN_FLOW_SERVICE_DEFAULT"] == flow_service_conn.connection_json()
    assert requests.post(flow_service_conn.ims_token_url, timeout=5).status_code == 400


def test_stop_is_quick_and_closes_keepalive_connections() -> None:
    emulator = FlowServiceEmulator().start()
    api = Api(emulator)
    flow = emulator.add_flow()
    url = emulator.url + PREFIX + f"/flows/{flow}"
    assert api.session.get(url, headers=api.headers(), timeout=5).status_code == 200
    started = time.monotonic()
    emulator.stop()
    emulator.stop()
    assert time.monotonic() - started < 1.5
    with pytest.raises(requests.ConnectionError):
        api.session.get(url, headers=api.headers(), timeout=5)
    with pytest.raises(RuntimeError, match="not running"):
        _ = emulator.url


def test_stop_interrupts_slow_fault() -> None:
    emulator = FlowServiceEmulator().start()
    api = Api(emulator)
    flow = emulator.add_flow()
    emulator.inject("slow", delay=30)
    outcome: list[BaseException | int] = []

    def slow_request() -> None:
        try:
            outcome.append(api.get(f"/flows/{flow}").status_code)
        except requests.RequestException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    emulator.stop()
    thread.join(timeout=5)
    assert time.monotonic() - started < 2 and outcome


def test_concurrent_pollers(emu: FlowServiceEmulator) -> None:
    flow = emu.add_flow(polls_to_finish=5)
    api = Api(emu)
    run_ids = [api.create(flow) for _ in range(20)]
    results: list[str] = []

    def poll(run_id: str) -> None:
        client = Api(emu)
        for _ in range(10):
            status = client.status(run_id)
            if status == "success":
                results.append(run_id)
                return

    threads = [threading.Thread(target=poll, args=(r,)) for r in run_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(results) == sorted(run_ids)
    polls = [sum(1 for q in emu.requests if q.method == "GET" and q.path.endswith(r)) for r in run_ids]
    assert polls == [6] * len(run_ids)


def test_cli_serves_until_sigterm() -> None:
    command = [
        sys.executable, "-m", "airflow_provider_flowservice.testing",
        "--port", "0", "--flow", "f-1:file", "--flow", "f-2", "--outcome", "failed", "--polls-to-finish", "0",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(4)]
        url = lines[0].rsplit(" ", 1)[1].strip()
        conn = json.loads(lines[3].split("=", 1)[1].strip().strip("'"))
        assert conn["host"] == url and "f-1, f-2" in lines[1]
        token = requests.post(
            url + "/ims/token/v3",
            data={
                "grant_type": "client_credentials",
                "client_id": conn["login"],
                "client_secret": conn["password"],
            },
            timeout=5,
        ).json()["access_token"]
        headers = {
            "Authorization": f"Bearer {token}", "x-api-key": conn["login"],
            "x-gw-ims-org-id": conn["extra"]["org_id"], "x-sandbox-name": conn["extra"]["sandbox_name"],
        }  # fmt: skip
        body = {"flowId": "f-1", "params": {"windowStartTime": START, "windowEndTime": END}}
        run_id = requests.post(url + PREFIX + "/runs", json=body, headers=headers, timeout=5).json()["items"][
            0
        ]["id"]
        run = requests.get(url + PREFIX + f"/runs/{run_id}", headers=headers, timeout=5).json()["items"][0]
        assert run["metrics"]["statusSummary"]["status"] == "failed"
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=10)
        assert process.returncode == 0 and "stopped" in out
        assert token not in out
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)


def test_cli_default_flow_stops_on_ctrl_c() -> None:
    command = [sys.executable, "-m", "airflow_provider_flowservice.testing", "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert "http://127.0.0.1:" in process.stdout.readline()
        assert process.stdout.readline().strip() == f"Flows: {DEFAULT_FLOW_ID}"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
        assert process.returncode == 0 and "stopped" in out and "Traceback" not in err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)


def test_cli_refuses_bad_flow() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "airflow_provider_flowservice.testing.emulator", "--flow", "x:stream"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "ID:file" in result.stderr and "'x:stream'" in result.stderr


def test_list_filters_on_the_window_params_with_every_operator(emu: FlowServiceEmulator, api: Api) -> None:
    flow = emu.add_flow(kind="file")
    starts = (START, START + 60, START + 120)
    ids = {start: api.post_run(flow, start, start + 60).json()["items"][0]["id"] for start in starts}

    def listed(*filters: str) -> set[str]:
        body = api.get("/runs", params={"property": [f"flowId=={flow}", *filters]}).json()
        return {r["id"] for r in body["items"]}

    assert listed(f"params.windowStartTime=={START + 60}") == {ids[START + 60]}
    assert listed(f"params.windowStartTime!={START + 60}") == {ids[START], ids[START + 120]}
    middle = {ids[START + 60]}
    assert listed(f"params.windowStartTime>={START + 60}", f"params.windowEndTime<={START + 120}") == middle
    assert listed(f"params.windowStartTime>{START}", f"params.windowStartTime<{START + 120}") == middle
    assert listed(f"params.windowStartTime>={START * 1000}") == set()


def test_refused_filter_fields_answer_400_for_those_properties_only(
    emu: FlowServiceEmulator, api: Api
) -> None:
    flow = emu.add_flow(kind="file")
    api.post_run(flow)
    emu.refused_filter_fields = {"params.windowStartTime"}
    refused = api.get("/runs", params={"property": [f"flowId=={flow}", f"params.windowStartTime>={START}"]})
    assert refused.status_code == 400
    assert "params.windowStartTime" in refused.json()["title"] + json.dumps(refused.json())
    allowed = {"property": [f"flowId=={flow}", f"params.windowEndTime=={END}"]}
    assert api.get("/runs", params=allowed).status_code == 200
    with pytest.raises(ValueError, match="collection of property paths"):
        emu.refused_filter_fields = "params.windowStartTime"  # type: ignore[assignment]
