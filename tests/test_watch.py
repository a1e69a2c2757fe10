"""The wait policy shared by the operator's blocking wait, the sensor and the trigger (``_watch.py``).

Pure unit tests: runs are built from API-shaped dicts, errors are constructed, and the task that
defers is a stand-in that records what it was asked to defer to. The waiters' loops are tested
against the emulator in tests/operators, tests/sensors and tests/triggers.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_flowservice._retry import RetryPolicy
from airflow_provider_flowservice._watch import RunWatch, defer_wait
from airflow_provider_flowservice.exceptions import (
    FlowServiceApiError,
    FlowServiceAuthError,
    FlowServiceConfigError,
    FlowServiceRetryError,
)
from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook
from airflow_provider_flowservice.models import FlowRun
from airflow_provider_flowservice.status import FlowRunStatus

RUN_ID = "c35ed8fd-3b7e-4a48-9bd6-3f6c5d7e6a10"
FLOW_ID = "3abea21c-7e36-4be1-bec1-d3bad0e3e0de"
LOGGER = "tests.watch"


def run(status: str | None, *, completed: bool = False) -> FlowRun:
    duration: dict[str, Any] = {"startedAtUTC": 1704067200000}
    if completed:
        duration["completedAtUTC"] = 1704067265500
    metrics = {"statusSummary": {"status": status}, "durationSummary": duration}
    return FlowRun.from_api({"id": RUN_ID, "flowId": FLOW_ID, "metrics": metrics})


def watch(what: str | None = None) -> RunWatch:
    return RunWatch(RUN_ID, logging.getLogger(LOGGER), what)


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


# ---------------------------------------------------------------- ended()


def test_nothing_is_known_before_the_first_poll() -> None:
    w = watch()
    assert (w.last, w.last_status, w.polls) == (None, None, 0)


def test_the_first_status_is_logged_and_a_running_run_has_not_ended(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    w = watch()
    first = run("inProgress")
    assert w.ended(first) is False
    assert lines(caplog) == [f"Flow run {RUN_ID} status: inProgress"]
    assert (w.last, w.last_status, w.polls) == (first, "inProgress", 1)


def test_a_status_is_logged_when_it_changes_not_on_every_poll(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    w = watch()
    for status in ("scheduled", "inProgress", "inProgress", "inProgress", "success"):
        w.ended(run(status))
    assert lines(caplog) == [f"Flow run {RUN_ID} status: {s}" for s in ("scheduled", "inProgress", "success")]
    assert w.polls == 5


def test_a_plan_rides_on_the_first_status_line_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    w = RunWatch(RUN_ID, logging.getLogger(LOGGER), plan="polled every 5 s.")
    for status in ("inProgress", "inProgress", "success"):
        w.ended(run(status))
    assert lines(caplog) == [
        f"Flow run {RUN_ID} status: inProgress; polled every 5 s.",
        f"Flow run {RUN_ID} status: success",
    ]


def test_without_log_end_the_end_is_not_logged_but_still_reported(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    w = RunWatch(RUN_ID, logging.getLogger(LOGGER), plan="polled every 5 s.", log_end=False)
    assert [w.ended(run(s)) for s in ("scheduled", "inProgress")] == [False, False]
    assert w.ended(run("success", completed=True)) is True
    assert lines(caplog) == [
        f"Flow run {RUN_ID} status: scheduled; polled every 5 s.",
        f"Flow run {RUN_ID} status: inProgress",
    ]
    assert (w.last_status, w.polls) == ("success", 3)
    w2 = RunWatch(RUN_ID, logging.getLogger(LOGGER), log_end=False)
    assert w2.ended(run("failed", completed=True)) is True  # ended at the first poll: no line at all
    assert len(lines(caplog)) == 2


@pytest.mark.parametrize("status", ["success", "partialSuccess", "failed", "FAILED"])
def test_a_finished_run_has_ended(status: str) -> None:
    w = watch()
    assert w.ended(run(status, completed=True)) is True
    assert w.last_status == status  # the raw value, as the API spelled it


def test_a_run_that_reports_completion_with_an_unknown_status_has_ended() -> None:
    ended_unknown = run("Cancelled", completed=True)
    assert ended_unknown.status is FlowRunStatus.ENDED_UNKNOWN
    assert watch().ended(ended_unknown) is True  # fails the task at once, not at its timeout


def test_an_unknown_status_without_completion_is_still_running() -> None:
    assert watch().ended(run("queuedSomewhere")) is False


# ---------------------------------------------------------------- hold_off()


def test_a_transient_error_is_polled_through_at_once_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    exc = FlowServiceApiError("HTTP 503 from Flow Service", status_code=503)
    assert watch().hold_off(exc) == 0.0
    assert lines(caplog) == [
        f"Transient error polling flow run {RUN_ID} (will keep polling): "
        "FlowServiceApiError: HTTP 503 from Flow Service"
    ]
    assert caplog.records[-1].levelno == logging.WARNING


def test_the_servers_retry_after_is_waited_in_full() -> None:
    spent = FlowServiceRetryError("retry budget spent", status_code=429)
    spent.retry_after = 420.0  # longer than the hook's budget: the waiter, not the hook, waits it out
    assert watch().hold_off(spent) == 420.0


@pytest.mark.parametrize("exc", [TimeoutError("read timed out"), ConnectionResetError("reset by peer")])
def test_network_errors_are_transient(exc: BaseException) -> None:
    assert watch().hold_off(exc) == 0.0


@pytest.mark.parametrize(
    "exc",
    [
        FlowServiceApiError("no such run", status_code=404),
        FlowServiceAuthError("client secret refused"),
        FlowServiceConfigError("bad connection"),
        ValueError("not JSON"),
    ],
)
def test_an_error_polling_cannot_fix_stops_the_wait_unlogged(
    exc: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    assert watch().hold_off(exc) is None
    assert lines(caplog) == []  # the caller raises or reports it, once


def test_a_failed_poll_keeps_the_last_successful_one() -> None:
    w = watch()
    seen = run("inProgress")
    w.ended(seen)
    w.hold_off(TimeoutError("read timed out"))
    assert (w.last, w.last_status, w.polls) == (seen, "inProgress", 1)


def test_messages_name_the_run_as_the_waiter_asks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    watch(f"flow run {RUN_ID} (flow {FLOW_ID})").hold_off(TimeoutError("read timed out"))
    what = f"flow run {RUN_ID} (flow {FLOW_ID})"
    assert lines(caplog)[0].startswith(f"Transient error polling {what} (will keep polling):")


# ---------------------------------------------------------------- defer_wait()


class Deferred(Exception):
    """What the stand-in task raises, as Airflow's ``defer`` raises ``TaskDeferred``."""


class Task:
    """What defer_wait reads from the operator or the sensor, and a ``defer`` that records."""

    def __init__(self, execution_timeout: timedelta | None = None) -> None:
        self.execution_timeout = execution_timeout
        self.log = logging.getLogger(LOGGER)
        self.deferred: dict[str, Any] = {}

    def defer(self, **kwargs: Any) -> None:
        self.deferred = kwargs
        raise Deferred


def deferred(task: Task, context: dict[str, Any], **kwargs: Any) -> tuple[str, dict[str, Any]]:
    kwargs = {"poll_interval": 15.0, "timeout": 600.0, **kwargs}
    flow_id = kwargs.pop("flow_id", FLOW_ID)
    hook = FlowServiceHook("flow_service_test", retry=RetryPolicy(max_attempts=3, max_total_seconds=60.0))
    with pytest.raises(Deferred):
        defer_wait(task, context, hook, RUN_ID, flow_id, **kwargs)  # type: ignore[arg-type]
    assert task.deferred["method_name"] == "execute_complete"
    return task.deferred["trigger"].serialize()  # type: ignore[no-any-return]


def test_the_trigger_is_the_released_one_with_the_same_kwargs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    before = time.time()
    classpath, kwargs = deferred(Task(), {})
    # A task deferred by the current release resumes only if both stay exactly these.
    assert classpath == "airflow_provider_flowservice.triggers.flow_service.FlowServiceRunTrigger"
    end_time = kwargs.pop("end_time")
    assert kwargs == {
        "run_id": RUN_ID,
        "flow_service_conn_id": "flow_service_test",
        "poll_interval": 15.0,
        "retry": {"max_attempts": 3, "initial_backoff": 1.0, "max_backoff": 30.0, "max_total_seconds": 60.0},
        "flow_id": FLOW_ID,
    }
    assert before + 600 <= end_time <= time.time() + 600
    assert lines(caplog) == [
        f"Deferring: the triggerer polls flow run {RUN_ID} every 15.0 s for up to 600.0 s."
    ]


def test_the_deadline_comes_before_airflows_execution_timeout() -> None:
    from airflow_provider_flowservice.triggers.flow_service import MIN_REQUEST_SECONDS

    started = datetime.now(UTC) - timedelta(seconds=100)
    ti = SimpleNamespace(start_date=started)
    _, kwargs = deferred(Task(execution_timeout=timedelta(seconds=120)), {"ti": ti}, timeout=3600.0)
    # 120 s after the start, less one last poll and 5 % of 120 s for the event to reach the task
    expected = started.timestamp() + 120 - MIN_REQUEST_SECONDS - 6
    assert kwargs["end_time"] == pytest.approx(expected, abs=0.01)


def test_an_unknown_flow_still_defers() -> None:
    _, kwargs = deferred(Task(), {"ti": SimpleNamespace(start_date=None)}, flow_id=None)
    assert kwargs["flow_id"] is None and kwargs["run_id"] == RUN_ID
