"""FlowServiceHook over real HTTP against the local emulator (IMS + Flow Service on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from airflow_provider_flowservice._auth import MAX_RENEWALS, TOKEN_CACHE, AccessToken, Renewals
from airflow_provider_flowservice._connection import DEFAULT_UI_URL_TEMPLATE
from airflow_provider_flowservice._retry import RetryPolicy
from airflow_provider_flowservice.exceptions import (
    FlowServiceApiError,
    FlowServiceAuthError,
    FlowServiceConfigError,
    FlowServiceError,
    FlowServiceRetryError,
)
from airflow_provider_flowservice.hooks._api import USER_AGENT
from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook
from airflow_provider_flowservice.status import FlowRunStatus
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator
from tests.hooks.conftest import FAST

W_START, W_END = 1_651_584_991, 1_651_585_956
FS = "/data/foundation/flowservice"


def fs_requests(em: FlowServiceEmulator, method: str | None = None, path: str = FS) -> list[Any]:
    return [r for r in em.requests if r.path.startswith(path) and (method is None or r.method == method)]


def define(
    monkeypatch: pytest.MonkeyPatch,
    em: FlowServiceEmulator,
    conn_id: str = "flow_service_default",
    **fields: Any,
) -> str:
    """Set AIRFLOW_CONN_<ID> to the emulator's connection JSON with top-level or extra overrides."""
    conn = json.loads(em.connection_json())
    for key in ("host", "login", "password"):
        if key in fields:
            conn[key] = fields.pop(key)
    conn["extra"].update(fields)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


@pytest.fixture
def em(flow_service_conn: FlowServiceEmulator) -> FlowServiceEmulator:
    return flow_service_conn


@pytest.fixture
def hook(em: FlowServiceEmulator) -> FlowServiceHook:
    return FlowServiceHook(retry=FAST)


# ---------------------------------------------------------------- construction, headers, tokens


def test_constructing_a_hook_reads_no_connection_and_sends_nothing(
    flow_service_emulator: FlowServiceEmulator,
) -> None:
    hook = FlowServiceHook("no_such_connection_anywhere")  # would fail if the connection were read
    assert hook.flow_service_conn_id == "no_such_connection_anywhere"
    assert flow_service_emulator.requests == []


def test_every_request_carries_the_auth_headers(em: FlowServiceEmulator, hook: FlowServiceHook) -> None:
    flow = em.add_flow(delta_column=None)
    created = hook.create_run(flow, W_START, W_END, delta_column="DOB")
    hook.get_run(created.run_id)
    hook.list_runs(flow)
    hook.get_flow(flow)

    token = em.tokens_issued[0]
    sent = fs_requests(em)
    assert len(sent) == 4
    for request in sent:
        assert request.headers["authorization"] == f"Bearer {token}"
        assert request.headers["x-api-key"] == em.client_id
        assert request.headers["x-gw-ims-org-id"] == em.org_id
        assert request.headers["x-sandbox-name"] == em.sandbox_name
    post = fs_requests(em, "POST")[0]
    assert post.headers["content-type"] == "application/json"
    assert post.body == {
        "flowId": flow,
        "params": {
            "windowStartTime": str(W_START),
            "windowEndTime": str(W_END),
            "deltaColumn": {"name": "DOB"},
        },
    }
    ims = [r for r in em.requests if r.path == "/ims/token/v3"]
    assert len(ims) == 1
    assert {r.headers["user-agent"] for r in sent + ims} == {USER_AGENT}  # IMS's request too
    assert ims[0].headers["content-type"] == "application/x-www-form-urlencoded"
    assert "authorization" not in ims[0].headers
    assert ims[0].body["grant_type"] == "client_credentials"
    assert ims[0].body["client_id"] == em.client_id
    assert (
        ims[0].body["scope"]
        == "openid,AdobeID,read_organizations,additional_info.projectedProductContext,session"
    )


def test_start_time_is_sent_as_string_seconds(em: FlowServiceEmulator, hook: FlowServiceHook) -> None:
    flow = em.add_flow(kind="file")
    hook.create_run(flow, W_START, W_END, start_time=W_END + 60)
    params = fs_requests(em, "POST")[0].body["params"]
    assert params == {
        "windowStartTime": str(W_START),
        "windowEndTime": str(W_END),
        "startTime": str(W_END + 60),
    }


def test_token_is_shared_by_hook_instances(em: FlowServiceEmulator) -> None:
    flow = em.add_flow()
    for _ in range(3):
        FlowServiceHook(retry=FAST).get_flow(flow)
    assert em.token_requests == 1
    assert len(set(r.headers["authorization"] for r in fs_requests(em))) == 1


def test_token_is_renewed_before_expiry(em: FlowServiceEmulator, hook: FlowServiceHook) -> None:
    # A 10 s lifetime is renewed once less than 1 s remains: the first two reads have 9 s to use the
    # token (a 1 s lifetime left 0.75 s, which a loaded CI machine overran), the third comes after.
    em.token_ttl = 10
    flow = em.add_flow()
    hook.get_flow(flow)
    hook.get_flow(flow)
    assert em.token_requests == 1
    time.sleep(9.1)
    hook.get_flow(flow)
    assert em.token_requests == 2
    statuses = [r.fault for r in fs_requests(em)]
    assert statuses == [None, None, None]  # renewed ahead of time: no 401 round trip
    auths = [r.headers["authorization"] for r in fs_requests(em)]
    assert auths[0] == auths[1] != auths[2]


def test_401_renews_the_token_once_and_repeats_the_request(
    em: FlowServiceEmulator, hook: FlowServiceHook
) -> None:
    flow = em.add_flow()
    hook.get_flow(flow)
    em.revoke_tokens()
    assert hook.get_flow(flow).id == flow
    assert em.token_requests == 2
    gets = fs_requests(em, "GET")
    assert len(gets) == 3
    assert gets[1].headers["authorization"] != gets[2].headers["authorization"]


def test_second_401_is_an_auth_error_naming_the_connection(
    em: FlowServiceEmulator, hook: FlowServiceHook
) -> None:
    flow = em.add_flow()
    em.inject("401", times=2)
    with pytest.raises(FlowServiceAuthError) as info:
        hook.get_flow(flow)
    message = str(info.value)
    assert "'flow_service_default'" in message
    assert "401013" in message
    assert em.token_requests == 2
    assert len(fs_requests(em)) == 2  # one renewal, one repeat, no retry loop on auth errors
    for token in em.tokens_issued:
        assert token not in message


def test_a_cached_token_from_before_the_refusal_refused_too_earns_one_fresh_renewal(
    em: FlowServiceEmulator, hook: FlowServiceHook
) -> None:
    # A's request carries T1 and is held 2 s by the server. Meanwhile the tokens are revoked, B
    # renews to T2, and the tokens are revoked again. A's 401 on T1 makes it take the cached T2:
    # issued before A saw its refusal, refused as well, so it proves nothing about the credentials.
    # A renews once more (T3, fetched for it) and succeeds instead of failing the task.
    flow = em.add_flow()
    hook.get_flow(flow)
    em.revoke_tokens()
    em.inject("slow", delay=2.0)
    box: list[Any] = []
    a = threading.Thread(target=lambda: box.append(FlowServiceHook(retry=FAST).get_flow(flow)))
    a.start()
    deadline = time.monotonic() + 10
    while not any(r.fault == "slow" for r in em.requests) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert FlowServiceHook(retry=FAST).get_flow(flow).id == flow  # B: 401 on T1, renews to T2
    em.revoke_tokens()
    assert a.is_alive(), "A's held request ended before B was done: the staging did not hold"
    a.join(timeout=15)
    assert [f.id for f in box] == [flow]
    assert em.token_requests == 3  # T1, T2 (B), T3 (A, after T2 was refused)
    # in order of arrival: the first get, A with T1 (held), B with T1, B with T2, A with T2, A with T3
    t0, a1, b1, b2, a2, a3 = [r.headers["authorization"] for r in fs_requests(em)]
    assert t0 == a1 == b1 != b2 == a2 != a3 != a1


def test_renewals_stop_at_a_token_issued_after_the_refusal_and_are_bounded() -> None:
    now = time.monotonic()
    old = AccessToken("t-old", expires_at=now - 10 + 3600, ttl=3600)  # issued 10 s ago
    renewals = Renewals()
    assert renewals.another(old)  # the first refusal always earns a renewal
    assert renewals.another(old)  # a token from before that refusal proves nothing
    fresh = AccessToken("t-new", expires_at=time.monotonic() + 3600, ttl=3600)
    assert not renewals.another(fresh)  # issued after the last refusal, refused: the credentials
    bounded = Renewals()
    assert [bounded.another(old) for _ in range(MAX_RENEWALS + 1)] == [True] * MAX_RENEWALS + [False]


def test_concurrent_callers_cause_one_ims_request_and_one_renewal(em: FlowServiceEmulator) -> None:
    flow = em.add_flow()
    errors: list[BaseException] = []
    barrier = threading.Barrier(20)

    def call() -> None:
        try:
            barrier.wait(timeout=10)
            FlowServiceHook(retry=FAST).get_flow(flow)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    def burst() -> None:
        threads = [threading.Thread(target=call) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)

    burst()
    assert errors == []
    assert em.token_requests == 1
    em.revoke_tokens()  # every thread now gets a 401 with the same token
    burst()
    assert errors == []
    assert em.token_requests == 2  # compare-and-invalidate: one renewal, not twenty


def test_invalid_client_names_the_connection_and_never_the_secret(
    flow_service_emulator: FlowServiceEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "wrong-secret-do-not-print-4711"
    conn_id = define(monkeypatch, flow_service_emulator, "aep_bad_secret", password=secret)
    with pytest.raises(FlowServiceAuthError) as info:
        FlowServiceHook(conn_id, retry=FAST).get_run("some-run")
    message = str(info.value)
    assert "aep_bad_secret" in message
    assert "invalid_client" in message and "invalid client_secret parameter" in message
    assert "client secret" in message  # the hint says what to fix
    assert secret not in message and secret not in repr(info.value.__dict__)
    assert flow_service_emulator.token_requests == 1  # an auth refusal is not retried


def test_static_access_token_is_used_as_is_and_its_refusal_is_explained(
    flow_service_emulator: FlowServiceEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import requests

    em = flow_service_emulator
    token = requests.post(
        em.ims_token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": em.client_id,
            "client_secret": em.client_secret,
        },
        timeout=5,
    ).json()["access_token"]
    conn_id = define(monkeypatch, em, "aep_static", password="", access_token=token)
    flow = em.add_flow()
    hook = FlowServiceHook(conn_id, retry=FAST)
    assert hook.get_flow(flow).id == flow
    assert em.token_requests == 1  # only the test's own request
    assert fs_requests(em)[0].headers["authorization"] == f"Bearer {token}"

    em.revoke_tokens()
    with pytest.raises(FlowServiceAuthError) as info:
        hook.get_flow(flow)
    message = str(info.value)
    assert "static access_token" in message and "aep_static" in message
    assert token not in message
    assert em.token_requests == 1  # no renewal is possible, none attempted


# ---------------------------------------------------------------- create, read, list


@pytest.mark.parametrize("shape", ["items", "bare", "run"])
def test_create_accepts_every_documented_response_shape(
    em: FlowServiceEmulator, hook: FlowServiceHook, shape: str
) -> None:
    em.create_response_shape = shape
    flow = em.add_flow()
    created = hook.create_run(flow, W_START, W_END, delta_column="DOB")
    assert created.run_id in em.runs
    assert created.etag
    assert created.adopted is False
    run = hook.get_run(created.run_id)
    assert run.flow_id == flow
    assert (run.window_start, run.window_end) == (W_START, W_END)


def test_get_run_follows_the_run_to_its_outcome(em: FlowServiceEmulator, hook: FlowServiceHook) -> None:
    flow = em.add_flow(outcome="failed", polls_to_finish=1)
    run_id = hook.create_run(flow, W_START, W_END, delta_column="DOB").run_id
    first = hook.get_run(run_id)
    assert first.status.is_running
    last = hook.get_run(run_id)
    assert last.status is FlowRunStatus.FAILED
    assert last.errors and last.errors[0].code


@pytest.mark.parametrize("style", ["absolute", "path"])
def test_list_runs_follows_pagination(em: FlowServiceEmulator, hook: FlowServiceHook, style: str) -> None:
    em.page_size = 3
    em.next_link_style = style
    flow = em.add_flow(kind="file")
    other = em.add_flow(kind="file")
    ids = {hook.create_run(flow, W_START + i * 100, W_START + i * 100 + 50).run_id for i in range(8)}
    hook.create_run(other, W_START, W_END)
    runs = hook.list_runs(flow)
    assert {r.id for r in runs} == ids
    assert len(fs_requests(em, "GET", FS + "/runs")) == 3  # pages of 3, 3, 2
    assert len(hook.list_runs(flow, limit=4)) == 4
    assert len(hook.list_runs(flow, max_pages=2)) == 6


def test_find_runs_for_window_is_newest_first(em: FlowServiceEmulator, hook: FlowServiceHook) -> None:
    em.page_size = 2
    flow = em.add_flow(kind="file")
    first = hook.create_run(flow, W_START, W_END).run_id
    hook.create_run(flow, W_START, W_END + 1)
    time.sleep(0.01)
    second = hook.create_run(flow, W_START, W_END).run_id
    found = hook.find_runs_for_window(flow, W_START, W_END)
    assert [r.id for r in found] == [second, first]
    assert hook.find_runs_for_window(flow, W_START + 1, W_END) == []


def test_a_run_that_echoes_its_window_in_milliseconds_is_still_found(
    em: FlowServiceEmulator, hook: FlowServiceHook
) -> None:
    flow = em.add_flow(kind="file")
    run_id = hook.create_run(flow, W_START, W_END).run_id
    run = em.runs[run_id]
    run["params"].update(windowStartTime=W_START * 1000, windowEndTime=str(W_END * 1000))
    run["activities"] = []  # only params say where the window is
    assert [r.id for r in hook.find_runs_for_window(flow, W_START, W_END)] == [run_id]


def history(em: FlowServiceEmulator, hook: FlowServiceHook, flow: str, count: int) -> list[int]:
    """``count`` runs of ``flow``, one per consecutive hourly window, oldest window first; window starts."""
    starts = [W_START + 3600 * i for i in range(count)]
    for start in starts:
        hook.create_run(flow, start, start + 3600)
    return starts


def window_lookups(em: FlowServiceEmulator) -> list[Any]:
    return [r for r in fs_requests(em, "GET", FS + "/runs") if r.path == FS + "/runs"]


def test_an_old_window_is_found_among_350_runs_at_a_cost_independent_of_history(
    em: FlowServiceEmulator, hook: FlowServiceHook
) -> None:
    """Issue 10: client-side filtering of at most 20 pages missed older windows (and cost 20 calls)."""
    flow = em.add_flow(kind="file", polls_to_finish=0)
    starts = history(em, hook, flow, 350)
    em.reset_requests()
    found = hook.find_runs_for_window(flow, starts[0], starts[0] + 3600)
    assert len(found) == 1 and (found[0].window_start, found[0].window_end) == (starts[0], starts[0] + 3600)
    lookups = window_lookups(em)
    assert len(lookups) == 2  # seconds (==) and milliseconds (>=, <=): nothing grows with history
    assert all(f"flowId=={flow}" in r.query["property"] for r in lookups)
    assert f"params.windowStartTime=={starts[0]}" in lookups[0].query["property"]
    assert f"params.windowStartTime>={starts[0] * 1000}" in lookups[1].query["property"]


def test_a_refused_window_filter_falls_back_to_reading_every_run(
    em: FlowServiceEmulator,
    hook: FlowServiceHook,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    em.page_size = 25
    flow = em.add_flow(kind="file", polls_to_finish=0)
    starts = history(em, hook, flow, 60)
    em.refused_filter_fields = {"params.windowStartTime"}
    em.reset_requests()
    found = hook.find_runs_for_window(flow, starts[0], starts[0] + 3600)
    assert [r.window_start for r in found] == [starts[0]]
    assert len(window_lookups(em)) == 1 + 3  # the refused query, then 3 pages of 25
    assert "refused to filter runs by window" in caplog.text + capfd.readouterr().out


def test_a_refused_window_filter_on_a_long_history_refuses_to_answer_none(
    em: FlowServiceEmulator, hook: FlowServiceHook
) -> None:
    """A partial listing cannot prove that no run of the window exists: it says so instead."""
    flow = em.add_flow(kind="file", polls_to_finish=0)
    starts = history(em, hook, flow, 350)  # page size 10: 35 pages, more than the fallback reads
    em.refused_filter_fields = {"params.windowStartTime", "params.windowEndTime"}
    em.reset_requests()
    with pytest.raises(FlowServiceError) as err:
        hook.find_runs_for_window(flow, starts[0], starts[0] + 3600)
    message = str(err.value)
    assert "cannot tell whether a run of window" in message and "No run was created" in message
    assert "reuse_existing_run=False" in message and "params.windowStartTime" in message
    assert len(window_lookups(em)) == 1 + 20
    assert not fs_requests(em, "POST")


def test_get_flow_returns_a_typed_flow(em: FlowServiceEmulator, hook: FlowServiceHook) -> None:
    flow = em.add_flow(name="Orders", delta_column="updated_at")
    result = hook.get_flow(flow)
    assert (result.id, result.name, result.state, result.delta_column) == (
        flow,
        "Orders",
        "enabled",
        "updated_at",
    )


def test_run_ui_url_needs_no_network(em: FlowServiceEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    url = FlowServiceHook(retry=FAST).run_ui_url("flow-1", "run-1")
    assert url == DEFAULT_UI_URL_TEMPLATE.format(
        flow_id="flow-1", run_id="run-1", sandbox_name=em.sandbox_name, org_id=em.org_id
    )
    define(
        monkeypatch,
        em,
        "aep_ui",
        ui_url_template="https://ui.example/{org_id}/{sandbox_name}/{flow_id}/{run_id}",
    )
    assert FlowServiceHook("aep_ui").run_ui_url("f", "r") == f"https://ui.example/{em.org_id}/prod/f/r"
    assert FlowServiceHook("aep_ui").run_ui_url("f") == f"https://ui.example/{em.org_id}/prod/f/"
    assert em.requests == []


# ---------------------------------------------------------------- errors


def test_unknown_flow_error_has_code_title_request_id_and_hint(
    em: FlowServiceEmulator, hook: FlowServiceHook
) -> None:
    with pytest.raises(FlowServiceApiError) as info:
        hook.create_run("3abea21c-7e36-4be1-bec1-d3bad0e3e0de", W_START, W_END)
    err = info.value
    assert err.status_code == 400 and err.error_code == "1430-400"
    assert err.request_id and err.request_id in str(err)
    assert str(err).startswith("Flow Service POST /runs failed: HTTP 400 1430-400")
    assert "flow_id exists in this sandbox" in str(err)
    assert len(fs_requests(em, "POST")) == 1  # a 400 is not retried


def test_unknown_run_is_a_404_error(em: FlowServiceEmulator, hook: FlowServiceHook) -> None:
    with pytest.raises(FlowServiceApiError) as info:
        hook.get_run("no-such-run")
    assert info.value.status_code == 404
    assert "GET /runs/no-such-run" in str(info.value)


def test_changing_the_delta_column_gets_the_delta_column_hint(
    em: FlowServiceEmulator, hook: FlowServiceHook
) -> None:
    flow = em.add_flow(delta_column="DOB")
    with pytest.raises(FlowServiceApiError) as info:
        hook.create_run(flow, W_START, W_END, delta_column="other_column")
    assert "deltaColumn is set only on a flow's first run" in str(info.value)
    file_flow = em.add_flow(kind="file")
    with pytest.raises(FlowServiceApiError) as info:
        hook.create_run(file_flow, W_START, W_END, delta_column="DOB")
    assert "file-based" in str(info.value)


def test_wrong_sandbox_gets_the_sandbox_hint(
    em: FlowServiceEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = define(monkeypatch, em, "aep_dev", sandbox_name="dev")
    with pytest.raises(FlowServiceApiError) as info:
        FlowServiceHook(conn_id, retry=FAST).get_run("r")
    assert info.value.error_code == "2105-400"
    assert "sandbox_name" in str(info.value)


def test_wrong_org_is_an_auth_error_without_pointless_renewal(
    em: FlowServiceEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = define(monkeypatch, em, "aep_other_org", org_id="OTHER@AdobeOrg")
    with pytest.raises(FlowServiceAuthError) as info:
        FlowServiceHook(conn_id, retry=FAST).get_run("r")
    assert info.value.error_code == "2002-401"
    assert "org_id" in str(info.value) and "aep_other_org" in str(info.value)
    assert em.token_requests == 1


# ---------------------------------------------------------------- retries


def test_429_without_retry_after_is_retried(em: FlowServiceEmulator, hook: FlowServiceHook) -> None:
    flow = em.add_flow()
    em.inject("429", times=2)
    assert hook.get_flow(flow).id == flow
    assert [r.fault for r in fs_requests(em)] == ["429", "429", None]


@pytest.mark.parametrize("kind", ["seconds", "http-date"])
def test_retry_after_is_honoured(em: FlowServiceEmulator, kind: str) -> None:
    flow = em.add_flow()
    # An HTTP date has whole seconds: a whole second 2 to 3 s ahead, so the wait it asks for does not
    # depend on the fraction of a second the test started at (``time.time() + 2`` truncated could
    # leave well under 1 s once the token request had taken its share).
    until = int(time.time()) + 3
    value = "1" if kind == "seconds" else formatdate(until, usegmt=True)
    em.inject("429", retry_after=value)
    hook = FlowServiceHook(retry=RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=5))
    assert hook.get_flow(flow).id == flow
    first, second = fs_requests(em)
    assert second.time - first.time >= 0.9
    if kind == "http-date":
        assert second.time >= until - 0.05  # not before the date the server named


def test_retry_after_is_honoured_beyond_max_backoff(em: FlowServiceEmulator) -> None:
    flow = em.add_flow()
    em.inject("429", retry_after="0.5")
    hook = FlowServiceHook(retry=RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05))
    assert hook.get_flow(flow).id == flow
    first, second = fs_requests(em)
    assert second.time - first.time >= 0.45  # the server's 0.5 s, not max_backoff's 0.05 s


def test_retry_after_longer_than_the_budget_fails_at_once_saying_so(em: FlowServiceEmulator) -> None:
    flow = em.add_flow()
    em.inject("429", retry_after="3600")
    hook = FlowServiceHook(retry=RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.2))
    started = time.monotonic()
    with pytest.raises(FlowServiceRetryError) as caught:
        hook.get_flow(flow)
    assert time.monotonic() - started < 3
    message = str(caught.value)
    assert "the server asked to wait 3600 s (Retry-After)" in message
    assert "max_total_seconds=300" in message and "429050" in message
    assert len(fs_requests(em)) == 1


@pytest.mark.parametrize("fault", ["500", "502", "503", "504", "reset", "drop"])
def test_transient_faults_are_retried(em: FlowServiceEmulator, hook: FlowServiceHook, fault: str) -> None:
    flow = em.add_flow()
    em.inject(fault, method="GET")
    assert hook.get_flow(flow).id == flow
    assert [r.fault for r in fs_requests(em)] == [fault, None]


def test_read_timeout_is_retried(em: FlowServiceEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    conn_id = define(monkeypatch, em, "aep_short_read", read_timeout=0.3)
    flow = em.add_flow()
    em.inject("slow", method="GET", delay=6.0)
    started = time.monotonic()
    assert FlowServiceHook(conn_id, retry=FAST).get_flow(flow).id == flow
    assert time.monotonic() - started < 4.0  # gave up after 0.3 s: did not wait 6 s for the slow answer
    assert [r.fault for r in fs_requests(em)] == ["slow", None]


def test_retries_are_bounded_and_the_final_error_says_what_was_tried(
    em: FlowServiceEmulator,
) -> None:
    flow = em.add_flow()
    em.inject("503", times=10)
    hook = FlowServiceHook(retry=RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02))
    with pytest.raises(FlowServiceRetryError) as info:
        hook.get_flow(flow)
    message = str(info.value)
    assert f"GET /flows/{flow}" in message
    assert "3 attempt(s)" in message and "max_attempts=3" in message
    assert "HTTP 503" in message and "1103-503" in message
    assert info.value.status_code == 503
    assert len(fs_requests(em)) == 3


def test_retries_stop_at_the_time_budget(em: FlowServiceEmulator) -> None:
    flow = em.add_flow()
    policy = RetryPolicy(max_attempts=50, initial_backoff=0.1, max_backoff=0.1, max_total_seconds=0.5)
    hook = FlowServiceHook(retry=policy)
    hook.get_flow(flow)  # connection read and token fetched before the clock starts
    em.reset_requests()
    em.inject("503", times=50)
    started = time.monotonic()
    with pytest.raises(FlowServiceRetryError):
        hook.get_flow(flow)
    # 50 attempts 0.1 s apart would take 5 s: the 0.5 s budget stops them long before.
    assert time.monotonic() - started < 3
    assert 2 <= len(fs_requests(em)) < 12


# ---------------------------------------------------------------- safe create


def test_create_after_drop_after_create_adopts_the_run(
    em: FlowServiceEmulator, hook: FlowServiceHook
) -> None:
    flow = em.add_flow(kind="file")
    em.inject("drop_after_create", method="POST")
    created = hook.create_run(flow, W_START, W_END)
    runs = em.runs_for_flow(flow)
    assert len(runs) == 1
    assert created.run_id == runs[0]["id"] and created.adopted is True
    assert len(fs_requests(em, "POST")) == 1


def test_create_after_500_checks_then_creates_once(em: FlowServiceEmulator, hook: FlowServiceHook) -> None:
    flow = em.add_flow(kind="file")
    em.inject("500", method="POST")
    created = hook.create_run(flow, W_START, W_END)
    assert [r["id"] for r in em.runs_for_flow(flow)] == [created.run_id]
    assert created.adopted is False
    methods = [(r.method, r.fault) for r in fs_requests(em)]
    assert methods == [("POST", "500"), ("GET", None), ("POST", None)]


def test_create_after_read_timeout_adopts_the_slow_run(
    em: FlowServiceEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = define(monkeypatch, em, "aep_slow_create", read_timeout=0.3)
    flow = em.add_flow(kind="file")
    em.inject("slow", method="POST", delay=0.5)  # the server creates the run after the client gave up
    created = FlowServiceHook(conn_id, retry=FAST).create_run(flow, W_START, W_END)
    runs = em.runs_for_flow(flow)
    assert [r["id"] for r in runs] == [created.run_id]
    assert created.adopted is True


def test_create_after_429_resends_directly(em: FlowServiceEmulator, hook: FlowServiceHook) -> None:
    flow = em.add_flow(kind="file")
    em.inject("429", method="POST")
    created = hook.create_run(flow, W_START, W_END)
    assert [r["id"] for r in em.runs_for_flow(flow)] == [created.run_id]
    assert [(r.method, r.fault) for r in fs_requests(em)] == [("POST", "429"), ("POST", None)]


def test_create_does_not_adopt_an_older_run_of_the_same_window(
    em: FlowServiceEmulator, hook: FlowServiceHook, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = em.add_flow(kind="file")
    old = hook.create_run(flow, W_START, W_END).run_id
    monkeypatch.setattr("airflow_provider_flowservice.hooks.flow_service.CLOCK_SKEW_SECONDS", -1)
    em.inject("500", method="POST")
    new = hook.create_run(flow, W_START, W_END)
    assert new.run_id != old and new.adopted is False
    assert len(em.runs_for_flow(flow)) == 2


def _age(em: FlowServiceEmulator, run_id: str, seconds: float) -> None:
    """Make a run look ``seconds`` older (within the clock-skew allowance, not the small skew)."""
    em.runs[run_id]["createdAt"] -= int(seconds * 1000)


@pytest.mark.parametrize("outcome", ["failed", "success"])
def test_create_never_adopts_an_earlier_run_that_had_already_ended(
    em: FlowServiceEmulator, hook: FlowServiceHook, outcome: str
) -> None:
    """Default skews: an earlier try's run of the window, ended a minute ago, is not ours."""
    flow = em.add_flow(kind="file", outcome=outcome, seconds_to_finish=0)
    old = hook.create_run(flow, W_START, W_END).run_id
    assert hook.get_run(old).status.is_terminal
    _age(em, old, 60)  # well inside CLOCK_SKEW_SECONDS (120 s)
    em.reset_requests()
    em.inject("500", method="POST")  # ambiguous failure; nothing was created
    new = hook.create_run(flow, W_START, W_END)
    assert new.run_id != old and new.adopted is False
    assert len(em.runs_for_flow(flow)) == 2
    assert [(r.method, r.fault) for r in fs_requests(em)] == [("POST", "500"), ("GET", None), ("POST", None)]


def test_create_adopts_its_own_run_even_when_it_already_failed(
    em: FlowServiceEmulator, hook: FlowServiceHook
) -> None:
    """The older ended run is skipped; the one the unanswered POST made is adopted, failed or not."""
    flow = em.add_flow(kind="file", outcome="failed", seconds_to_finish=0)
    old = hook.create_run(flow, W_START, W_END).run_id
    _age(em, old, 60)
    em.inject("503_after_create", method="POST")
    new = hook.create_run(flow, W_START, W_END)
    assert new.adopted is True and new.run_id != old
    assert [r["id"] for r in em.runs_for_flow(flow)] == [old, new.run_id]
    assert hook.get_run(new.run_id).status.is_terminal  # it had ended when it was adopted
    assert len(fs_requests(em, "POST")) == 2  # the old run's and the 503 one: nothing more


@pytest.mark.parametrize("as_list", [True, False], ids=["list", "one-string"])
def test_create_never_adopts_an_excluded_run(
    em: FlowServiceEmulator, hook: FlowServiceHook, as_list: bool
) -> None:
    """A run the caller saw before creating (still running, just created) is never taken for ours."""
    flow = em.add_flow(kind="file", polls_to_finish=5)
    seen = hook.create_run(flow, W_START, W_END).run_id
    em.inject("500", method="POST")
    new = hook.create_run(flow, W_START, W_END, exclude_run_ids=[seen] if as_list else seen)
    assert new.run_id != seen and new.adopted is False
    assert len(em.runs_for_flow(flow)) == 2


def test_create_without_exclusions_may_adopt_a_recent_running_run(
    em: FlowServiceEmulator, hook: FlowServiceHook
) -> None:
    """Why ``exclude_run_ids`` exists: a running run from seconds ago is indistinguishable from ours."""
    flow = em.add_flow(kind="file", polls_to_finish=5)
    seen = hook.create_run(flow, W_START, W_END).run_id
    em.inject("500", method="POST")
    assert hook.create_run(flow, W_START, W_END).run_id == seen


@pytest.mark.parametrize("fault", [f"{status}_after_create" for status in (500, 502, 503, 504)])
def test_create_after_a_5xx_that_created_the_run_adopts_it(
    em: FlowServiceEmulator, hook: FlowServiceHook, fault: str
) -> None:
    flow = em.add_flow(kind="file")
    em.inject(fault, method="POST")
    created = hook.create_run(flow, W_START, W_END)
    assert [r["id"] for r in em.runs_for_flow(flow)] == [created.run_id]
    assert created.adopted is True
    assert [(r.method, r.fault) for r in fs_requests(em)] == [("POST", fault), ("GET", None)]


def test_create_lookup_stops_at_the_time_budget_and_sends_no_second_post(
    em: FlowServiceEmulator,
) -> None:
    """Slow look-up pages would run past max_total_seconds: it stops there rather than POST blind."""
    em.page_size = 1
    flow = em.add_flow(kind="file")
    policy = RetryPolicy(max_attempts=6, initial_backoff=0.01, max_backoff=0.02, max_total_seconds=0.6)
    hook = FlowServiceHook(retry=policy)
    for i in range(1, 6):  # recent runs of other windows: the look-up must page past them
        hook.create_run(flow, W_START + i * 10, W_START + i * 10 + 5)
    em.reset_requests()
    em.inject("500", method="POST")
    em.inject("slow", method="GET", path="/flowservice/runs", delay=0.35, times=10)
    started = time.monotonic()
    with pytest.raises(FlowServiceRetryError) as caught:
        hook.create_run(flow, W_START, W_END)
    assert time.monotonic() - started < 1.5  # about one page past the budget, not five
    message = str(caught.value)
    assert "ran out while checking whether an unanswered create attempt had created a run" in message
    assert "no second POST was sent" in message and "max_total_seconds=0.6" in message
    assert len(fs_requests(em, "POST")) == 1
    assert 1 <= len(fs_requests(em, "GET")) <= 3
    em.clear_faults()


def test_create_under_random_faults_makes_exactly_one_run_per_window(
    em: FlowServiceEmulator, hook: FlowServiceHook
) -> None:
    flow = em.add_flow(kind="file")
    em.set_random_faults(
        0.4, ["500", "503", "drop", "drop_after_create", "503_after_create", "reset", "429"], seed=7
    )
    policy = RetryPolicy(max_attempts=12, initial_backoff=0.01, max_backoff=0.02, max_total_seconds=30)
    hook = FlowServiceHook(retry=policy)
    created = [hook.create_run(flow, W_START + i * 10, W_START + i * 10 + 5) for i in range(10)]
    em.set_random_faults(0, [])
    by_window: dict[int, list[str]] = {}
    for run in em.runs_for_flow(flow):
        by_window.setdefault(int(run["params"]["windowStartTime"]), []).append(run["id"])
    assert {k: len(v) for k, v in by_window.items()} == {W_START + i * 10: 1 for i in range(10)}
    assert [c.run_id for c in created] == [by_window[W_START + i * 10][0] for i in range(10)]


# ---------------------------------------------------------------- no secret in messages


def _leaks(text: str, em: FlowServiceEmulator) -> list[str]:
    from urllib.parse import quote_plus

    secrets = [em.client_secret, quote_plus(em.client_secret), *em.tokens_issued]
    return [s for s in secrets if s and s in text]


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("400", FlowServiceApiError),
        ("404", FlowServiceApiError),
        ("503", FlowServiceRetryError),
        ("401", FlowServiceAuthError),
        ("notjson", FlowServiceApiError),
    ],
)
def test_error_messages_never_repeat_an_echoed_token_or_secret(
    flow_service_emulator: FlowServiceEmulator, echo_conn: str, path: str, error: type[Exception]
) -> None:
    em = flow_service_emulator
    hook = FlowServiceHook(echo_conn, retry=RetryPolicy(max_attempts=2, initial_backoff=0.01))
    with pytest.raises(error) as caught:
        hook.get_run(path)
    exc = caught.value
    assert em.tokens_issued, "the token really came from IMS and was sent"
    texts = [str(exc), repr(exc.args), *(str(getattr(exc, a, "")) for a in ("title", "detail", "request_id"))]
    assert [leak for t in texts for leak in _leaks(t, em)] == []
    assert "***" in str(exc)  # the echo is there, redacted


def test_redaction_covers_the_adoption_path_and_a_static_token(
    flow_service_emulator: FlowServiceEmulator, echo_conn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = json.loads(os.environ["AIRFLOW_CONN_AEP_ECHO"])
    conn["password"] = None
    conn["extra"]["access_token"] = "static-token-0123456789"
    monkeypatch.setenv("AIRFLOW_CONN_AEP_ECHO_STATIC", json.dumps(conn))
    with pytest.raises(FlowServiceApiError) as caught:
        FlowServiceHook("aep_echo_static", retry=FAST).get_run("400")
    assert "static-token-0123456789" not in str(caught.value) and "***" in str(caught.value)


# ---------------------------------------------------------------- redirects, TLS rules


class _Redirector(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        self.send_response(302)
        self.send_header("Location", self.server.target + self.path)  # type: ignore[attr-defined]
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[Callable[[str], ThreadingHTTPServer]]:
    servers: list[ThreadingHTTPServer] = []

    def start(target: str) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
        server.hits = []  # type: ignore[attr-defined]
        server.target = target  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_redirect_is_refused_and_the_token_stays_home(
    http_server: Callable[[str], ThreadingHTTPServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = http_server("http://127.0.0.1:9")  # a second server the token must never reach
    redirector = http_server(f"http://127.0.0.2:{elsewhere.server_address[1]}")
    conn = {
        "conn_type": "adobe_flow_service",
        "host": f"http://127.0.0.1:{redirector.server_address[1]}",
        "login": "client",
        "extra": {"org_id": "ORG@AdobeOrg", "access_token": "static-token-value"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AEP_REDIRECT", json.dumps(conn))
    with pytest.raises(FlowServiceApiError) as info:
        FlowServiceHook("aep_redirect", retry=FAST).get_run("r1")
    assert f"127.0.0.2:{elsewhere.server_address[1]}" in str(info.value)
    assert "HTTP 302" in str(info.value)
    assert len(redirector.hits) == 1  # not retried either
    assert elsewhere.hits == []
    assert "static-token-value" not in str(info.value)


def test_plain_http_to_a_remote_host_is_refused_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {
        "conn_type": "adobe_flow_service",
        "host": "http://platform.example.com",
        "login": "id",
        "password": "secret",
        "extra": {"org_id": "ORG@AdobeOrg"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AEP_PLAIN", json.dumps(conn))
    with pytest.raises(FlowServiceConfigError, match="allow_insecure_http"):
        FlowServiceHook("aep_plain").get_run("r")
    ok, message = FlowServiceHook("aep_plain").test_connection()
    assert not ok and "https://platform.example.com" in message
    assert "aep_plain" not in message and message.startswith("The connection has host=")


# ---------------------------------------------------------------- test_connection


def test_test_connection_succeeds_with_a_round_trip(em: FlowServiceEmulator) -> None:
    ok, message = FlowServiceHook().test_connection()
    assert ok, message
    assert em.org_id in message
    assert em.token_requests == 1
    (listed,) = fs_requests(em)
    assert (listed.method, listed.path, listed.query.get("limit")) == ("GET", FS + "/runs", ["1"])


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"password": "not-the-secret"}, "IMS refused the client"),
        ({"login": "someone-else"}, "IMS refused the client"),
        ({"org_id": "OTHER@AdobeOrg"}, "the connection was refused; fix its org_id extra"),
        ({"sandbox_name": "dev"}, "refused the org, sandbox or API key"),
        ({"org_id": ""}, "The connection has no org_id"),
        ({"scopes": "openid, 'AdobeID'"}, "The connection has extra scopes="),
    ],
)
def test_test_connection_says_what_is_wrong(
    flow_service_emulator: FlowServiceEmulator,
    monkeypatch: pytest.MonkeyPatch,
    fields: dict[str, Any],
    expected: str,
) -> None:
    conn_id = define(monkeypatch, flow_service_emulator, "aep_test_conn", **fields)
    ok, message = FlowServiceHook(conn_id).test_connection()
    assert not ok
    assert expected in message
    # Airflow's Test button tests a copy under a random id: naming it would mislead.
    assert "aep_test_conn" not in message
    assert flow_service_emulator.client_secret not in message


def test_test_connection_reports_an_unreachable_host(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conn = {
        "conn_type": "adobe_flow_service",
        "host": f"http://127.0.0.1:{port}",
        "login": "id",
        "extra": {"org_id": "ORG@AdobeOrg", "access_token": "tok"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AEP_DOWN", json.dumps(conn))
    ok, message = FlowServiceHook("aep_down").test_connection()
    assert not ok
    assert "unreachable" in message and f"127.0.0.1:{port}" in message


def test_token_cache_is_clean_between_tests() -> None:
    assert TOKEN_CACHE.fetches == 0


# ---------------------------------------------------------------- pure request/response helpers


def _settings(host: str = "https://platform.adobe.io") -> Any:
    from airflow_provider_flowservice._connection import FlowServiceConnectionSettings

    return FlowServiceConnectionSettings.from_fields(
        conn_id="aep", host=host, login="id", password="secret", extra={"org_id": "O@AdobeOrg"}
    )


@pytest.mark.parametrize(
    ("href", "url", "token"),
    [
        (
            "https://platform.adobe.io/data/foundation/flowservice/runs?continuationToken=abc",
            "https://platform.adobe.io/data/foundation/flowservice/runs",
            "abc",
        ),
        (
            "/data/foundation/flowservice/runs?continuationToken=abc",
            "https://platform.adobe.io/data/foundation/flowservice/runs",
            "abc",
        ),
        ("/runs?continuationToken=abc", "https://platform.adobe.io/data/foundation/flowservice/runs", "abc"),
        ("runs?continuationToken=abc", "https://platform.adobe.io/data/foundation/flowservice/runs", "abc"),
        ("?continuationToken=abc", "https://platform.adobe.io/data/foundation/flowservice/runs", "abc"),
        ("continuationToken=abc", "https://platform.adobe.io/data/foundation/flowservice/runs", "abc"),
    ],
)
def test_next_page_link_forms(href: str, url: str, token: str) -> None:
    from airflow_provider_flowservice.hooks._api import next_page

    params = {"property": ["flowId==f"], "orderby": "-createdAt"}
    result = next_page({"items": [], "_links": {"next": {"href": href}}}, _settings(), params)
    assert result == (url, {**params, "continuationToken": token})


def test_next_page_link_query_overrides_and_last_page() -> None:
    from airflow_provider_flowservice.hooks._api import next_page

    href = "/runs?property=flowId%3D%3Df&property=x%3D%3Dy&limit=5&continuationToken=t"
    _, params = next_page({"_links": {"next": {"href": href}}}, _settings(), {"limit": 10})  # type: ignore[misc]
    assert params == {"property": ["flowId==f", "x==y"], "limit": "5", "continuationToken": "t"}
    for data in (
        {"items": []},
        {"_links": {}},
        {"_links": {"next": {}}},
        {"_links": {"next": {"href": ""}}},
        [],
    ):
        assert next_page(data, _settings(), {}) is None


@pytest.mark.parametrize(
    "href", ["https://evil.example.com/runs?continuationToken=t", "http://platform.adobe.io/runs?x=1"]
)
def test_next_page_link_to_another_host_or_scheme_is_refused(href: str) -> None:
    from airflow_provider_flowservice.hooks._api import next_page

    with pytest.raises(FlowServiceApiError, match="refusing to send credentials"):
        next_page({"_links": {"next": {"href": href}}}, _settings(), {})


@pytest.mark.parametrize(
    ("host", "href"),
    [
        ("https://platform.adobe.io", "https://platform.adobe.io:443/data/foundation/flowservice/runs?x=1"),
        ("https://platform.adobe.io", "https://PLATFORM.Adobe.io/data/foundation/flowservice/runs?x=1"),
        ("https://platform.adobe.io:443", "https://platform.adobe.io/data/foundation/flowservice/runs?x=1"),
        ("http://127.0.0.1:8765", "http://localhost:8765/data/foundation/flowservice/runs?x=1"),
    ],
    ids=["explicit-443", "host-case", "configured-443", "other-loopback-name"],
)
def test_next_page_link_compares_origins_not_raw_netlocs(host: str, href: str) -> None:
    from airflow_provider_flowservice.hooks._api import next_page

    data = {"_links": {"next": {"href": href}}}
    if "localhost" in href:  # another name for the host is another origin: refused
        with pytest.raises(FlowServiceApiError, match="refusing to send credentials"):
            next_page(data, _settings(host), {})
        return
    url, params = next_page(data, _settings(host), {})  # type: ignore[misc]
    assert url == href.split("?", maxsplit=1)[0] and params == {"x": "1"}


@pytest.mark.parametrize(
    "href",
    [
        "https://platform.adobe.io:8443/data/foundation/flowservice/runs?x=1",
        "https://platform.adobe.io:80/data/foundation/flowservice/runs?x=1",
        "https://platform.adobe.io:notaport/runs?x=1",
        "https://user@evil.example.com:443/runs?x=1",
    ],
)
def test_next_page_link_to_another_port_is_refused(href: str) -> None:
    from airflow_provider_flowservice.hooks._api import next_page

    with pytest.raises(FlowServiceApiError, match="refusing to send credentials"):
        next_page({"_links": {"next": {"href": href}}}, _settings(), {})


FLOW = "3abea21c-7e36-4be1-bec1-d3bad0e3e0de"


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        (("", W_START, W_END), {}, "flow_id '' is not a dataflow id: Flow Service expects a UUID"),
        (("a/b", W_START, W_END), {}, "flow_id 'a/b' is not a dataflow id"),
        (("my-dataflow", W_START, W_END), {}, "not the source connection id"),
        ((FLOW, W_START * 1000, W_END * 1000), {}, "looks like unix milliseconds"),
        ((FLOW, W_START, 16515859567), {}, "window_end 16515859567 is after 2200-01-01"),
        ((FLOW, W_END, W_START), {}, "Run window is inverted"),
        ((FLOW, W_START, W_START), {}, "Run window is empty"),
        ((FLOW, str(W_START), W_END), {}, "not an integer"),
        ((FLOW, True, W_END), {}, "not an integer"),
        ((FLOW, -1, W_END), {}, "is before 1970-01-01"),
        ((FLOW, W_START, W_END), {"start_time": 1663735590000}, "start_time 1663735590000 looks like unix"),
        ((FLOW, W_START, W_END), {"delta_column": "  "}, "delta_column '  ' is not a column name"),
    ],
)
def test_create_run_body_validation(args: tuple[Any, ...], kwargs: dict[str, Any], fragment: str) -> None:
    from airflow_provider_flowservice.hooks._api import create_run_body

    with pytest.raises(FlowServiceConfigError, match=re.escape(fragment)):
        create_run_body(*args, **kwargs)


@pytest.mark.parametrize(
    ("value", "name"),
    [("my-dataflow", "flow_id"), (16515859567, "window_end"), (W_END * 1000, "window_end")],
)
def test_create_run_refuses_what_the_operator_refuses_before_sending(
    em: FlowServiceEmulator, hook: FlowServiceHook, value: Any, name: str
) -> None:
    """The hook checks like the operator (_window.py), with the same message, and sends nothing."""
    from airflow_provider_flowservice._window import resolve_window, validate_flow_id

    arguments: dict[str, Any] = {"flow_id": em.add_flow(), "window_start": W_START, "window_end": W_END}
    arguments[name] = value
    with pytest.raises(FlowServiceConfigError) as from_hook:
        hook.create_run(**arguments)
    with pytest.raises(FlowServiceConfigError) as from_window:
        validate_flow_id(value) if name == "flow_id" else resolve_window(W_START, value)
    assert str(from_hook.value) == str(from_window.value)
    assert em.requests == []  # not even a token request


def test_create_run_body_sends_seconds_as_strings() -> None:
    from airflow_provider_flowservice.hooks._api import create_run_body

    body = create_run_body(f" {FLOW} ", W_START, W_END, start_time=1663735590, delta_column=" DOB ")
    assert body == {
        "flowId": FLOW,
        "params": {
            "windowStartTime": str(W_START),
            "windowEndTime": str(W_END),
            "startTime": "1663735590",
            "deltaColumn": {"name": "DOB"},
        },
    }


@pytest.mark.parametrize(
    "data",
    [
        {"items": [{"id": "r1", "etag": '"e"'}]},
        {"id": "r1", "etag": '"e"'},
        {"id": "r1", "etag": '"e"', "flowId": "f", "metrics": {"statusSummary": {"status": "scheduled"}}},
    ],
)
def test_parse_created_run_shapes(data: dict[str, Any]) -> None:
    from airflow_provider_flowservice.hooks._api import parse_created_run

    created = parse_created_run(data)
    assert (created.run_id, created.etag, created.adopted) == ("r1", '"e"', False)


@pytest.mark.parametrize("data", [{}, {"items": []}, {"items": [{"etag": "e"}]}, [], "oops"])
def test_parse_created_run_without_an_id(data: Any) -> None:
    from airflow_provider_flowservice.hooks._api import parse_created_run

    with pytest.raises(FlowServiceApiError, match="without a run id"):
        parse_created_run(data)


def test_newest_first_puts_runs_without_created_at_last() -> None:
    from airflow_provider_flowservice.hooks._api import newest_first
    from airflow_provider_flowservice.models import FlowRun

    runs = [
        FlowRun.from_api({"id": i, "createdAt": c}) for i, c in [("a", 1), ("b", None), ("c", 3), ("d", 2)]
    ]
    assert [r.id for r in newest_first(runs)] == ["c", "d", "a", "b"]


def test_refused_create_names_the_values_that_were_sent(
    em: FlowServiceEmulator, hook: FlowServiceHook
) -> None:
    """Adobe's wording may not name the refused value; the error names what was sent."""
    file_flow = em.add_flow(kind="file")
    with pytest.raises(FlowServiceApiError) as caught:
        hook.create_run(file_flow, W_START, W_END, delta_column="DOB")
    message = str(caught.value)
    assert caught.value.status_code == 400
    assert f"flow_id {file_flow}" in message
    assert f"[{W_START}, {W_END})" in message
    assert "deltaColumn 'DOB'" in message
