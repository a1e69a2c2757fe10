"""FlowServiceRunSensor on its own: arguments, poke, deferral and trigger events, against the emulator.

Whole DAG runs in each mode are in tests/e2e/test_sensor_dag.py; here the sensor's methods are
called directly, with a small stand-in for the task instance (it only records XCom pushes).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowSensorTimeout, PokeReturnValue, TaskDeferred

from airflow_provider_flowservice._auth import TOKEN_CACHE
from airflow_provider_flowservice._retry import RetryPolicy
from airflow_provider_flowservice.exceptions import (
    FlowServiceApiError,
    FlowServiceConfigError,
    FlowServiceError,
    FlowServiceRunError,
)
from airflow_provider_flowservice.links.flow_service import FlowServiceRunLink
from airflow_provider_flowservice.sensors.flow_service import (
    DEFAULT_POLL_INTERVAL,
    FlowServiceRunOutcomeError,
    FlowServiceRunSensor,
)
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator
from airflow_provider_flowservice.triggers.flow_service import FlowServiceRunTrigger
from airflow_provider_flowservice.version_compat import (
    AIRFLOW_V_3_0_PLUS,
    AirflowFailException,
    AirflowSkipException,
)

WINDOW = (1735689600, 1735693200)
ONE_TRY = RetryPolicy(max_attempts=1, initial_backoff=0.0, max_backoff=0.0, max_total_seconds=5.0)


class RecordingTI:
    """Stands in for the task instance: the sensor only pushes XCom through it."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}
        self.pushes = 0

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value
        self.pushes += 1


@pytest.fixture(autouse=True)
def _clean_token_cache() -> Iterator[None]:
    TOKEN_CACHE.clear()
    yield
    TOKEN_CACHE.clear()


@pytest.fixture
def context() -> dict[str, Any]:
    return {"ti": RecordingTI()}


def _run(emulator: FlowServiceEmulator, outcome: str = "success", polls: int = 2, **flow: Any) -> str:
    flow_id = emulator.add_flow(kind="file", outcome=outcome, polls_to_finish=polls, **flow)
    from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook

    return FlowServiceHook().create_run(flow_id, *WINDOW).run_id


def _sensor(run_id: str, **kwargs: Any) -> FlowServiceRunSensor:
    kwargs.setdefault("poll_interval", 0.05)
    kwargs.setdefault("timeout", 30)
    return FlowServiceRunSensor(task_id="wait", run_id=run_id, **kwargs)


# ------------------------------------------------------------------------------------- arguments


def test_construction_reads_no_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_FLOW_SERVICE_DEFAULT", raising=False)
    sensor = FlowServiceRunSensor(task_id="wait", run_id="r", flow_service_conn_id="does_not_exist")
    assert sensor.flow_service_conn_id == "does_not_exist"
    assert "hook" not in sensor.__dict__  # created on first use only


def test_poll_interval_is_the_poke_interval() -> None:
    assert FlowServiceRunSensor(task_id="a", run_id="r").poke_interval == DEFAULT_POLL_INTERVAL
    assert FlowServiceRunSensor(task_id="b", run_id="r", poll_interval=5).poke_interval == 5
    every_two_minutes = FlowServiceRunSensor(task_id="c", run_id="r", poll_interval=timedelta(minutes=2))
    assert every_two_minutes.poke_interval == 120
    assert FlowServiceRunSensor(task_id="d", run_id="r", poke_interval=7).poke_interval == 7


def test_poll_and_poke_interval_together_are_refused() -> None:
    with pytest.raises(FlowServiceConfigError, match=r"poll_interval=5.*poke_interval=7.*only poll_interval"):
        FlowServiceRunSensor(task_id="a", run_id="r", poll_interval=5, poke_interval=7)


@pytest.mark.parametrize("bad", [0, -1, "10", True])
def test_bad_poll_interval_is_named(bad: Any) -> None:
    with pytest.raises(FlowServiceConfigError, match=rf"poll_interval {bad!r} must be a positive number"):
        FlowServiceRunSensor(task_id="a", run_id="r", poll_interval=bad)


def test_run_id_is_templated_and_reschedule_is_allowed() -> None:
    sensor = FlowServiceRunSensor(task_id="a", run_id="{{ ti.xcom_pull('x') }}", mode="reschedule")
    assert "run_id" in sensor.template_fields
    assert sensor.mode == "reschedule"


@pytest.mark.parametrize("bad", ["None", "", "  ", "null", "a/b", None])
def test_a_missing_run_id_says_how_to_pass_one(bad: Any, context: dict[str, Any]) -> None:
    sensor = _sensor(bad)
    with pytest.raises(FlowServiceConfigError, match=r"is not a flow run id.*xcom_pull\(task_ids="):
        sensor.execute(context)


# ------------------------------------------------------------------------------------------ poke


def test_poke_until_success_returns_the_summary(
    flow_service_conn: FlowServiceEmulator, context: dict
) -> None:
    run_id = _run(flow_service_conn, polls=2)
    sensor = _sensor(run_id)
    results = [sensor.poke(context) for _ in range(3)]
    assert results[:2] == [False, False]
    done = results[2]
    assert isinstance(done, PokeReturnValue) and done.is_done
    assert done.xcom_value["run_id"] == run_id
    assert done.xcom_value["status"] == "success"
    assert done.xcom_value["files"] == {"inputFileCount": 2, "outputFileCount": 2, "failedFileCount": 0}
    ti = context["ti"]
    assert ti.xcom["run_url"].startswith("https://")
    if AIRFLOW_V_3_0_PLUS:  # Airflow 3's UI reads the link's own XCom: written at the first poke
        assert ti.xcom[FlowServiceRunLink().xcom_key] == ti.xcom["run_url"]
    assert ti.pushes == (2 if AIRFLOW_V_3_0_PLUS else 1)  # once, not on every poke


def test_poke_mode_execute_returns_the_summary(flow_service_conn: FlowServiceEmulator, context: dict) -> None:
    run_id = _run(flow_service_conn, polls=1)
    summary = _sensor(run_id).execute(context)
    assert summary["status"] == "success"
    assert (summary["window_start"], summary["window_end"]) == WINDOW


def test_failed_run_fails_without_retry_and_names_its_errors(
    flow_service_conn: FlowServiceEmulator, context: dict
) -> None:
    run_id = _run(flow_service_conn, outcome="failed", polls=0,
                  errors=[{"code": "CONNECTOR-1234-500", "message": "table locked"}])
    started = time.monotonic()
    with pytest.raises(FlowServiceRunOutcomeError) as caught:
        _sensor(run_id, timeout=60, poll_interval=1).execute(context)
    assert time.monotonic() - started < 10  # at once, not after the timeout
    error = caught.value
    assert isinstance(error, FlowServiceRunError) and isinstance(error, AirflowFailException)
    assert error.run_id == run_id and error.status == "failed"
    assert [e.code for e in error.errors] == ["CONNECTOR-1234-500"]
    assert "CONNECTOR-1234-500: table locked" in str(error)
    assert f"See {context['ti'].xcom['run_url']}" in str(error)
    # No chained cause with the same message: the task log would print the failure twice.
    assert error.__cause__ is None and error.__suppress_context__


@pytest.mark.parametrize("flag", ["soft_fail", "never_fail"])
@pytest.mark.parametrize("deferrable", [False, True])
def test_failed_run_is_skipped_under_soft_fail(
    flow_service_conn: FlowServiceEmulator, context: dict, flag: str, deferrable: bool
) -> None:
    run_id = _run(flow_service_conn, outcome="failed", polls=0)
    with pytest.raises(AirflowSkipException, match=rf"CONNECTOR-2001-500.*{flag}=True"):
        _sensor(run_id, deferrable=deferrable, **{flag: True}).execute(context)


def test_partial_success_needs_allow_partial_success(
    flow_service_conn: FlowServiceEmulator, context: dict
) -> None:
    run_id = _run(flow_service_conn, outcome="partialSuccess", polls=0)
    with pytest.raises(FlowServiceRunOutcomeError, match="allow_partial_success=True"):
        _sensor(run_id).execute(context)
    assert _sensor(run_id, allow_partial_success=True).execute(context)["status"] == "partialSuccess"


def test_transient_error_is_polled_through(flow_service_conn: FlowServiceEmulator, context: dict) -> None:
    run_id = _run(flow_service_conn, polls=0)
    flow_service_conn.inject("503", path=f"/runs/{run_id}")
    sensor = _sensor(run_id, retry=ONE_TRY)
    assert sensor.poke(context) is False  # the 503 is logged, not raised
    assert sensor.poke(context).xcom_value["status"] == "success"


def test_unknown_run_fails_the_sensor(flow_service_conn: FlowServiceEmulator, context: dict) -> None:
    with pytest.raises(FlowServiceApiError, match="1439-404"):
        _sensor("6f1d8a54-0000-4000-8000-000000000000").poke(context)


def test_poke_timeout_names_the_run_and_its_last_status(
    flow_service_conn: FlowServiceEmulator, context: dict
) -> None:
    run_id = _run(flow_service_conn, polls=10**6)
    with pytest.raises(AirflowSensorTimeout) as caught:
        _sensor(run_id, timeout=0.3).execute(context)
    assert run_id in str(caught.value)
    assert "'inProgress'" in str(caught.value)
    assert "timeout=" in str(caught.value)


# ------------------------------------------------------------------------------------ deferrable


def test_deferrable_defers_with_everything_the_trigger_needs(
    flow_service_conn: FlowServiceEmulator, context: dict
) -> None:
    run_id = _run(flow_service_conn, polls=5)
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.5)
    sensor = _sensor(run_id, deferrable=True, timeout=600, poll_interval=7, retry=policy,
                     flow_service_conn_id="flow_service_default")
    before = time.time()
    with pytest.raises(TaskDeferred) as caught:
        sensor.execute(context)
    deferred = caught.value
    assert deferred.method_name == "execute_complete"
    trigger = deferred.trigger
    assert isinstance(trigger, FlowServiceRunTrigger)
    classpath, kwargs = trigger.serialize()
    assert classpath.endswith("FlowServiceRunTrigger")
    assert kwargs["run_id"] == run_id
    assert kwargs["poll_interval"] == 7
    assert kwargs["flow_service_conn_id"] == "flow_service_default"
    assert before + 600 <= kwargs["end_time"] <= time.time() + 600
    assert kwargs["retry"] == policy.to_dict()
    assert kwargs["flow_id"] == flow_service_conn.runs[run_id]["flowId"]
    text = json.dumps(kwargs)
    assert flow_service_conn.client_secret not in text
    assert not any(token in text for token in flow_service_conn.tokens_issued)


def test_deferral_deadline_is_clipped_by_execution_timeout(
    flow_service_conn: FlowServiceEmulator, context: dict
) -> None:
    """Like the operator: the trigger fires before Airflow's own execution_timeout cut-off."""
    from datetime import UTC, datetime

    from airflow_provider_flowservice.triggers.flow_service import MIN_REQUEST_SECONDS

    run_id = _run(flow_service_conn, polls=5)
    context["ti"].start_date = datetime.now(UTC) - timedelta(seconds=40)
    sensor = _sensor(run_id, deferrable=True, timeout=3600, execution_timeout=timedelta(seconds=100))
    with pytest.raises(TaskDeferred) as caught:
        sensor.execute(context)
    end_time = caught.value.trigger.serialize()[1]["end_time"]
    expected = context["ti"].start_date.timestamp() + 100 - MIN_REQUEST_SECONDS - 5
    assert end_time == pytest.approx(expected, abs=0.01)


def test_deferred_sensor_sends_the_default_retry_policy_as_values(
    flow_service_conn: FlowServiceEmulator, context: dict
) -> None:
    run_id = _run(flow_service_conn, polls=5)
    with pytest.raises(TaskDeferred) as caught:
        _sensor(run_id, deferrable=True).execute(context)
    assert caught.value.trigger.serialize()[1]["retry"] == RetryPolicy().to_dict()


def test_deferred_failure_names_the_run_page(context: dict) -> None:
    """execute_complete reads the run URL the sensor pushed before deferring."""

    class PullingTI(RecordingTI):
        task_id = "wait"

        def xcom_pull(self, *, task_ids: str, key: str, map_indexes: int) -> Any:
            assert (task_ids, map_indexes) == ("wait", -1)
            return self.xcom.get(key)

    ti = PullingTI()
    ti.xcom["run_url"] = "https://experience.adobe.com/#/platform/source/dataflows/f/runs"
    failed = _summary("failed", [{"code": "CONNECTOR-2001-500", "message": "boom"}])
    with pytest.raises(FlowServiceRunOutcomeError, match=r"See https://experience\.adobe\.com/"):
        _sensor("run-1").execute_complete({"ti": ti}, _event("terminal", summary=failed))


def test_deferrable_does_not_defer_for_a_finished_run(
    flow_service_conn: FlowServiceEmulator, context: dict
) -> None:
    run_id = _run(flow_service_conn, polls=0)
    assert _sensor(run_id, deferrable=True).execute(context)["status"] == "success"


def _event(status: str, run_id: str = "run-1", summary: dict | None = None, message: str = "msg") -> dict:
    return {"status": status, "run_id": run_id, "run_status": (summary or {}).get("status"),
            "summary": summary, "message": message}


def _summary(status: str, errors: list | None = None) -> dict:
    return {"run_id": "run-1", "flow_id": "f", "status": status, "errors": errors or [],
            "window_start": WINDOW[0], "window_end": WINDOW[1], "records": {}, "files": {},
            "duration_seconds": 1.0}


def test_execute_complete_applies_the_outcome_rules(context: dict) -> None:
    sensor = _sensor("run-1")
    done = sensor.execute_complete(context, _event("terminal", summary=_summary("success")))
    assert done["status"] == "success"
    failed = _summary("Failed", [{"code": "CONNECTOR-2001-500", "message": "boom"}])
    with pytest.raises(FlowServiceRunOutcomeError, match=r"run-1.*CONNECTOR-2001-500: boom"):
        sensor.execute_complete(context, _event("terminal", summary=failed))
    with pytest.raises(AirflowSkipException, match="CONNECTOR-2001-500"):
        _sensor("run-1", soft_fail=True).execute_complete(context, _event("terminal", summary=failed))
    partial = _summary("partialSuccess")
    with pytest.raises(FlowServiceRunOutcomeError, match="allow_partial_success"):
        sensor.execute_complete(context, _event("terminal", summary=partial))
    allowed = _sensor("run-1", allow_partial_success=True)
    accepted = allowed.execute_complete(context, _event("terminal", summary=partial))
    assert accepted["status"] == "partialSuccess"


def test_execute_complete_timeout_event(context: dict) -> None:
    message = "Timed out waiting for flow run run-1: last status 'inProgress'."
    with pytest.raises(AirflowSensorTimeout, match=r"Timed out waiting for flow run run-1.*timeout=\.\.\."):
        _sensor("run-1", timeout=5).execute_complete(context, _event("timeout", message=message))
    with pytest.raises(AirflowSkipException, match=r"Timed out waiting for flow run run-1.*soft_fail=True"):
        _sensor("run-1", soft_fail=True).execute_complete(context, _event("timeout", message=message))


def test_execute_complete_error_event_keeps_the_message(context: dict) -> None:
    message = "Stopped waiting: 401 token not valid"
    with pytest.raises(FlowServiceError, match=message) as caught:
        _sensor("run-1").execute_complete(context, _event("error", message=message))
    assert not isinstance(caught.value, AirflowFailException)  # may be fixed and retried


class ReadingTI(RecordingTI):
    """RecordingTI that can also read back its own XCom (as pushed_run_url does)."""

    task_id = "wait"
    map_index = -1

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []

    def xcom_push(self, key: str, value: Any) -> None:
        super().xcom_push(key, value)
        self.keys.append(key)

    def xcom_pull(self, task_ids: str, key: str, map_indexes: int = -1) -> Any:
        return self.xcom.get(key)


@pytest.mark.parametrize("airflow_3_context", [True, False], ids=["reschedule-count", "no-count"])
def test_reschedule_mode_publishes_the_link_once_per_try(
    flow_service_conn: FlowServiceEmulator, airflow_3_context: bool
) -> None:
    """Issue 10: every reschedule poke (a new process: a new sensor object) wrote the link XCom."""
    run_id = _run(flow_service_conn, polls=3)
    ti = ReadingTI()
    for poke in range(3):
        sensor = _sensor(run_id, mode="reschedule")  # as a fresh process builds it
        context: dict[str, Any] = {"ti": ti}
        if airflow_3_context:
            context["task_reschedule_count"] = poke
        assert sensor.poke(context) is False
    assert ti.keys.count("run_url") == 1
    if AIRFLOW_V_3_0_PLUS:
        assert ti.keys.count(FlowServiceRunLink().xcom_key) == 1
    assert flow_service_conn.runs[run_id]["flowId"] in ti.xcom["run_url"]
