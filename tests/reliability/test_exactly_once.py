"""Exactly one flow run per window when a fault hits any step of the operator's path.

Real HTTP against the emulator, the real operator (blocking and deferred legs), and the fault
where it hurts most: on ``POST /runs`` (the one non-idempotent request), on the status polls,
and during the look-up that decides whether a run already exists.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from airflow_provider_flowservice._retry import RetryPolicy
from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator
from tests.reliability._support import (
    FAST,
    JAN1,
    JAN2,
    automatic_retry,
    context_for,
    execute,
    first_try,
    lists,
    make_op,
    polls,
    posts,
    status_of,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)


PATIENT = RetryPolicy(max_attempts=6, initial_backoff=0.01, max_backoff=1.0, max_total_seconds=10.0)
"""Like FAST, with longer computed waits (a Retry-After is honoured in full by any policy)."""


def assert_one_successful_run(emu: FlowServiceEmulator, flow: str, run_id: str) -> None:
    runs = emu.runs_for_flow(flow)
    assert [r["id"] for r in runs] == [run_id], f"{len(runs)} runs for one window"
    assert status_of(emu, run_id) == "success"


POST_FAULTS = [
    pytest.param("drop_after_create", {}, id="drop_after_create"),
    pytest.param("500", {}, id="500"),
    pytest.param("502", {}, id="502"),
    pytest.param("503", {}, id="503"),
    pytest.param("504", {}, id="504"),
    # the gateway answers 5xx although the run WAS created: the likeliest real source of duplicates
    pytest.param("500_after_create", {}, id="500-after-create"),
    pytest.param("502_after_create", {}, id="502-after-create"),
    pytest.param("503_after_create", {}, id="503-after-create"),
    pytest.param("504_after_create", {}, id="504-after-create"),
    pytest.param("slow", {"delay": 0.7}, id="read-timeout"),  # read_timeout is 0.5 s
    pytest.param("reset", {}, id="reset"),
    pytest.param("drop", {}, id="drop"),
    pytest.param("429", {}, id="429"),
    pytest.param("429", {"retry_after": "0.3"}, id="429-retry-after"),
]


@pytest.mark.parametrize(("fault", "options"), POST_FAULTS)
def test_fault_on_create_gives_exactly_one_run(
    emu: FlowServiceEmulator, fault: str, options: dict[str, Any]
) -> None:
    flow = emu.add_flow()
    emu.inject(fault, method="POST", **options)
    done = execute(make_op(flow, retry=PATIENT), context_for(first_try()))
    assert_one_successful_run(emu, flow, done.result)
    assert not emu.pending_faults  # the fault really hit the POST
    assert posts(emu)[0].fault == fault
    if fault.endswith("_after_create"):
        assert len(posts(emu)) == 1  # the run was found and adopted, not sent again
    if fault == "429" and options:
        first, second = posts(emu)[:2]
        assert second.time - first.time >= 0.25  # Retry-After honoured


@pytest.mark.parametrize(
    "fault", ["drop_after_create", "503", "503_after_create", "504_after_create", "reset"]
)
def test_fault_on_create_deferrable(emu: FlowServiceEmulator, fault: str) -> None:
    flow = emu.add_flow(polls_to_finish=2)
    emu.inject(fault, method="POST")
    done = execute(make_op(flow, deferrable=True), context_for(first_try()))
    assert done.deferred is not None
    assert done.events[0].payload["status"] == "terminal"
    assert_one_successful_run(emu, flow, done.result)


def test_adoption_lookup_failing_too(emu: FlowServiceEmulator) -> None:
    """Created-but-unanswered POST, then a 503 on the look-up that checks for it: still one run.

    (``reuse_existing_run=False`` skips the operator's own look-up before creating, so the 503 hits
    the hook's adoption look-up.)
    """
    flow = emu.add_flow()
    emu.inject("drop_after_create", method="POST")
    emu.inject("503", method="GET", path="/flowservice/runs")
    done = execute(make_op(flow, reuse_existing_run=False), context_for(first_try()))
    assert_one_successful_run(emu, flow, done.result)
    sequence = [(r.method, r.path.rsplit("/", 1)[-1], r.fault) for r in emu.requests if "/ims/" not in r.path]
    assert sequence[:3] == [
        ("POST", "runs", "drop_after_create"), ("GET", "runs", "503"), ("GET", "runs", None),
    ]
    assert len(posts(emu)) == 1


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferrable"])
@pytest.mark.parametrize("retry_after", [None, "0.3"], ids=["no-retry-after", "retry-after"])
def test_429_on_status_polls(emu: FlowServiceEmulator, deferrable: bool, retry_after: str | None) -> None:
    flow = emu.add_flow(polls_to_finish=2)
    emu.inject("429", method="GET", path="/flowservice/runs/", times=3, retry_after=retry_after)
    started = time.monotonic()
    done = execute(make_op(flow, deferrable=deferrable, retry=PATIENT), context_for(first_try()))
    assert_one_successful_run(emu, flow, done.result)
    assert not emu.pending_faults
    throttled = [r for r in polls(emu) if r.fault == "429"]
    assert len(throttled) == 3
    if retry_after:
        assert time.monotonic() - started >= 0.85  # three waits of 0.3 s
    assert len(posts(emu)) == 1


@pytest.mark.parametrize("fault", ["500", "503", "504", "reset", "drop", "slow"])
def test_transient_faults_on_polls_do_not_end_the_wait(emu: FlowServiceEmulator, fault: str) -> None:
    flow = emu.add_flow(polls_to_finish=2)
    emu.inject(fault, method="GET", path="/flowservice/runs/", times=2, delay=0.7)
    done = execute(make_op(flow), context_for(first_try()))
    assert_one_successful_run(emu, flow, done.result)
    assert not emu.pending_faults


def test_retry_lookup_finds_an_older_run_without_paging_the_history(emu: FlowServiceEmulator) -> None:
    """A retry finds its window's run although 6 newer runs of the flow fill 3 pages (page size 2):
    the server filters by window, so the look-up reads no page of other windows, and waits on it."""
    emu.page_size = 2
    flow = emu.add_flow(seconds_to_finish=1.0)
    hook = FlowServiceHook(retry=FAST)
    mine = hook.create_run(flow, JAN1, JAN2).run_id  # the earlier try's run; its worker then died
    for day in range(1, 7):  # later runs of the same flow (other windows) push it to page 4
        hook.create_run(flow, JAN1 + day * 86400, JAN2 + day * 86400)
    emu.reset_requests()
    done = execute(make_op(flow), context_for(automatic_retry()))
    assert done.result == mine
    assert posts(emu) == []
    pages = lists(emu)
    assert len(pages) == 2 and not any("continuationToken" in p.query for p in pages)
    assert all(f"params.windowEndTime=={JAN2}" in p.query["property"] or
               f"params.windowEndTime>={JAN2 * 1000}" in p.query["property"] for p in pages)
    assert status_of(emu, mine) == "success"
    assert len(emu.runs_for_flow(flow)) == 7


def test_create_adoption_follows_pagination(
    emu: FlowServiceEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The POST goes unanswered; by the time the hook looks, newer runs of the flow push the created
    run to page 3 (page size 2). The hook pages to it and adopts it: one run for the window."""
    emu.page_size = 2
    flow = emu.add_flow(polls_to_finish=1)
    read_timeout = 0.6
    monkeypatch.setenv(
        "AIRFLOW_CONN_FLOW_SERVICE_DEFAULT", emu.connection_json(read_timeout=read_timeout)
    )
    # the server answers after 0.8 s: the client gives up at 0.6 s, looks (nothing yet), waits for the
    # request to settle (until ~1.2 s), then looks again.
    emu.inject("slow", method="POST", delay=0.8)
    others: list[str] = []

    def another_task_creates_runs() -> None:
        if not wait_until(lambda: len(emu.runs_for_flow(flow)) == 1, timeout=5):
            return
        hook = FlowServiceHook(retry=FAST)
        for day in range(1, 6):
            others.append(hook.create_run(flow, JAN1 + day * 86400, JAN2 + day * 86400).run_id)

    helper = threading.Thread(target=another_task_creates_runs)
    helper.start()
    try:
        done = execute(make_op(flow), context_for(first_try()))
    finally:
        helper.join(timeout=10)
    assert len(others) == 5
    mine = [r for r in emu.runs_for_flow(flow) if r["id"] not in others]
    assert [r["id"] for r in mine] == [done.result]  # adopted, not created twice
    mine_posts = [p for p in posts(emu) if p.body["params"]["windowStartTime"] == str(JAN1)]
    assert len(mine_posts) == 1
    assert any("continuationToken" in p.query for p in lists(emu))
    assert status_of(emu, done.result) == "success"
