"""FlowServiceCreateRunOperator in real Airflow (``dag.test()``) against the emulator.

Also the reuse rule (retry reattaches / adopts, a clear re-ingests), input validation before any
request, XComs pushed before waiting, and the deferred path's event handling.
"""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pendulum
import pytest

from airflow_provider_flowservice.exceptions import (
    FlowServiceConfigError,
    FlowServiceError,
    FlowServiceRunError,
    FlowServiceTimeoutError,
)
from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook
from airflow_provider_flowservice.operators.flow_service import (
    TASK_STATE_KEY,
    FlowServiceCreateRunOperator,
    is_automatic_retry,
)
from airflow_provider_flowservice.retry import RetryPolicy
from airflow_provider_flowservice.version_compat import AIRFLOW_V_3_0_PLUS, AIRFLOW_V_3_3_PLUS
from tests.e2e.harness import record_failure, run_dag
from tests.helpers import LogText

if AIRFLOW_V_3_0_PLUS:
    from airflow.sdk import DAG
else:
    from airflow import DAG

    # Airflow 2 deletes or clears runs whose notes point at FAB's user table: map that table.
    with contextlib.suppress(ImportError):
        import airflow.providers.fab.auth_manager.models  # noqa: F401
from airflow.timetables.interval import CronDataIntervalTimetable

pytestmark = pytest.mark.timeout(180)

JAN1 = 1704067200
JAN2 = JAN1 + 86400
LOGICAL = pendulum.datetime(2024, 1, 2, tz="UTC")  # daily data interval: 2024-01-01 -> 2024-01-02
FAST = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02, max_total_seconds=2.0)


@pytest.fixture
def emu(airflow_db, flow_service_conn):
    return flow_service_conn


@pytest.fixture
def output(capfd, caplog):
    """All task log text so far (structlog writes to the fds on Airflow 3, logging on 2.11)."""
    caplog.set_level("INFO")

    def read() -> LogText:
        captured = capfd.readouterr()
        return LogText(caplog.text, captured.out + captured.err)

    return read


_counter = iter(range(1_000_000))


def make_dag(*, schedule: Any = "daily", params: dict | None = None, **op_kwargs: Any):
    """A one-task DAG with a unique id; ``schedule='daily'`` is a data-interval cron timetable."""
    if schedule == "daily":
        schedule = CronDataIntervalTimetable("0 0 * * *", timezone="UTC")
    dag_id = f"op_test_{next(_counter)}_{datetime.now(UTC).strftime('%H%M%S%f')}"
    op_kwargs.setdefault("poll_interval", 0.05)
    op_kwargs.setdefault("retry", FAST)
    with DAG(
        dag_id,
        schedule=schedule,
        start_date=pendulum.datetime(2023, 1, 1, tz="UTC"),
        catchup=False,
        params=params or {},
    ) as dag:
        FlowServiceCreateRunOperator(task_id="run", on_failure_callback=record_failure, **op_kwargs)
    return dag


def posts(emu) -> list:
    return [r for r in emu.requests if r.method == "POST" and r.path.endswith("/flowservice/runs")]


def polls(emu, run_id: str) -> int:
    return sum(1 for r in emu.requests if r.method == "GET" and r.path.endswith(f"/runs/{run_id}"))


# ------------------------------------------------------------------ dag.test(): outcomes


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferrable"])
def test_success_sends_window_and_returns_run_id(emu, output, deferrable):
    flow = emu.add_flow(polls_to_finish=5)
    result = run_dag(make_dag(flow_id=flow, deferrable=deferrable), logical_date=LOGICAL)
    assert result.states == {"run": "success"}, result.errors
    (post,) = posts(emu)
    params = post.body["params"]
    assert post.body["flowId"] == flow
    assert (int(params["windowStartTime"]), int(params["windowEndTime"])) == (JAN1, JAN2)
    run_id = result.xcom("run")
    assert run_id in emu.runs
    assert flow in result.xcom("run", key="run_url")
    text = output()
    assert (
        "2024-01-01T00:00:00+00:00 -> 2024-01-02T00:00:00+00:00 (unix seconds 1704067200 -> 1704153600"
        in text
    )
    assert f"Flow run id: {run_id}" in text
    # logged on change, not on each of the 5 polls that saw it (Airflow 2 may echo a line to two handlers)
    assert 1 <= text.count(f"Flow run {run_id} status: inProgress") <= 2
    assert f"Flow run {run_id} finished: status 'success'" in text
    assert "records:  input 100, output 100, failed 0" in text
    assert ("Deferring" in text) is deferrable


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferrable"])
def test_failed_run_fails_task_with_errors(emu, deferrable):
    flow = emu.add_flow(outcome="failed", polls_to_finish=1)
    result = run_dag(make_dag(flow_id=flow, deferrable=deferrable), logical_date=LOGICAL)
    assert result.states == {"run": "failed"}
    error = result.errors["run"]
    run_id = result.xcom("run")
    assert isinstance(error, FlowServiceRunError)
    assert run_id in str(error) and "'failed'" in str(error)
    assert "CONNECTOR-2001-500" in str(error)
    assert len(posts(emu)) == 1


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferrable"])
@pytest.mark.parametrize("allow", [False, True], ids=["refused", "allowed"])
def test_partial_success(emu, output, allow, deferrable):
    flow = emu.add_flow(outcome="partialSuccess", polls_to_finish=1)
    result = run_dag(
        make_dag(flow_id=flow, allow_partial_success=allow, deferrable=deferrable), logical_date=LOGICAL
    )
    if allow:
        assert result.states == {"run": "success"}
        assert "accepted because allow_partial_success=True" in output()
    else:
        assert result.states == {"run": "failed"}
        assert "allow_partial_success=True" in str(result.errors["run"])


def test_wait_for_completion_false_returns_at_once(emu):
    flow = emu.add_flow(seconds_to_finish=600)
    result = run_dag(make_dag(flow_id=flow, wait_for_completion=False), logical_date=LOGICAL)
    assert result.states == {"run": "success"}
    run_id = result.xcom("run")
    assert polls(emu, run_id) == 0
    assert result.xcom("run", key="run_url")


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferrable"])
def test_timeout_names_run_and_fix_and_xcom_was_pushed_before_waiting(emu, deferrable):
    flow = emu.add_flow(seconds_to_finish=600)
    result = run_dag(make_dag(flow_id=flow, timeout=0.5, deferrable=deferrable), logical_date=LOGICAL)
    assert result.states == {"run": "failed"}
    error = result.errors["run"]
    assert isinstance(error, FlowServiceTimeoutError)
    # the run id and URL were in XCom although the task never finished waiting
    run_id = result.xcom("run")
    assert run_id and run_id in emu.runs
    assert flow in result.xcom("run", key="run_url")
    message = str(error)
    assert run_id in message and "'inProgress'" in message
    assert "timeout" in message and "continues in Experience Platform" in message
    assert error.run_id == run_id


def test_explicit_templated_window(emu):
    flow = emu.add_flow(polls_to_finish=0)
    dag = make_dag(
        schedule=None,
        params={"ws": "2024-03-01T00:00:00+01:00", "we": "1709337600"},
        flow_id="{{ params.flow }}",
        window_start="{{ params.ws }}",
        window_end="{{ params.we }}",
    )
    dag.params["flow"] = flow
    result = run_dag(dag, logical_date=LOGICAL)
    assert result.states == {"run": "success"}, result.errors
    params = posts(emu)[0].body["params"]
    assert (int(params["windowStartTime"]), int(params["windowEndTime"])) == (1709247600, 1709337600)


# ------------------------------------------------------------------ validation before any request


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"flow_id": "not-a-uuid"}, "flow_id 'not-a-uuid' is not a dataflow id"),
        (
            {"window_start": "2024-01-01T00:00:00", "window_end": JAN2},
            "window_start '2024-01-01T00:00:00' has no UTC offset; add one, e.g. '2024-01-01T00:00:00+00:00'",
        ),
        ({"window_start": JAN1 * 1000, "window_end": JAN2 * 1000}, "divide by 1000"),
        ({"window_start": JAN2, "window_end": JAN1}, "inverted"),
        ({"window_start": "{{ params.unset }}", "window_end": JAN2}, "window_start is 'None'"),
        ({"delta_column": "  "}, "delta_column '  ' is not a column name"),
        ({"start_time": "tomorrow"}, "start_time 'tomorrow' is neither unix seconds"),
    ],
    ids=["flow_id", "naive", "milliseconds", "inverted", "empty-template", "delta", "start_time"],
)
def test_invalid_inputs_send_nothing(emu, kwargs, expected):
    flow = emu.add_flow()
    kwargs = {"flow_id": flow, **kwargs}
    result = run_dag(make_dag(params={"unset": None}, **kwargs), logical_date=LOGICAL)
    assert result.states == {"run": "failed"}
    error = result.errors["run"]
    assert isinstance(error, FlowServiceConfigError)
    assert expected in str(error)
    assert emu.requests == []  # not even a token request


def test_invalid_input_fails_without_using_retries(emu):
    """The same input would fail the same way: no retry is spent on it (the failure callback ran)."""
    from datetime import timedelta

    emu.add_flow()
    result = run_dag(
        make_dag(flow_id="not-a-uuid", retries=3, retry_delay=timedelta(seconds=0)), logical_date=LOGICAL
    )
    assert result.states == {"run": "failed"}  # not up_for_retry
    assert isinstance(result.errors["run"], FlowServiceConfigError)
    assert result.task_instances["run"].try_number == 1
    assert emu.requests == []


def test_zero_length_data_interval_explains_the_fix(emu):
    flow = emu.add_flow()
    result = run_dag(make_dag(schedule=None, flow_id=flow), logical_date=LOGICAL)
    assert result.states == {"run": "failed"}
    message = str(result.errors["run"])
    assert "data interval is empty" in message
    assert "2024-01-02T00:00:00+00:00 (unix 1704153600)" in message
    assert 'CronDataIntervalTimetable("0 0 * * *", timezone="UTC")' in message
    assert "window_start" in message and "window_end" in message
    assert emu.requests == []


@pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="Airflow 2 runs always have a logical date")
def test_run_without_logical_date_explains_the_fix(emu):
    flow = emu.add_flow()
    dag = make_dag(schedule=None, flow_id=flow)
    from tests.e2e.harness import FAILURES, _serialize_for_test

    FAILURES.clear()
    _serialize_for_test(dag)
    dag_run = dag.test(logical_date=None)
    (ti,) = dag_run.get_task_instances()
    assert str(getattr(ti.state, "value", ti.state)) == "failed"
    message = str(FAILURES["run"])
    assert "logical date" in message and "CronDataIntervalTimetable" in message
    assert emu.requests == []


def test_constructing_makes_no_request_and_reads_no_connection(emu, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_FLOW_SERVICE_DEFAULT")
    op = FlowServiceCreateRunOperator(task_id="t", flow_id="x", flow_service_conn_id="does_not_exist")
    assert "hook" not in op.__dict__
    assert emu.requests == []
    assert op.template_fields == ("flow_id", "window_start", "window_end", "delta_column", "start_time")


@pytest.mark.parametrize(
    ("name", "value"), [("poll_interval", 0), ("timeout", -1), ("timeout", timedelta(0))]
)
def test_bad_numbers_fail_at_parse_time(name, value):
    with pytest.raises(FlowServiceConfigError, match=name):
        FlowServiceCreateRunOperator(task_id="t", flow_id="x", **{name: value})


def test_timeout_defaults():
    op = FlowServiceCreateRunOperator(task_id="a", flow_id="x")
    assert op.timeout_seconds == 24 * 3600
    op = FlowServiceCreateRunOperator(task_id="b", flow_id="x", execution_timeout=timedelta(minutes=5))
    assert op.timeout_seconds == 300
    op = FlowServiceCreateRunOperator(
        task_id="c", flow_id="x", timeout=timedelta(minutes=2), execution_timeout=timedelta(minutes=5)
    )
    assert op.timeout_seconds == 120


def test_deferral_deadline_comes_before_airflows_execution_timeout():
    """Our trigger must fire (with its clear message) before Airflow's own deferral cut-off."""
    op = FlowServiceCreateRunOperator(task_id="t", flow_id="x", execution_timeout=timedelta(seconds=100))
    ti = RetryLikeTI(1, 0)
    ti.start_date = datetime.now(UTC) - timedelta(seconds=40)
    end = op._deferral_end_time({"ti": ti}, op.timeout_seconds)
    assert end == pytest.approx(ti.start_date.timestamp() + 95, abs=0.01)
    op = FlowServiceCreateRunOperator(task_id="u", flow_id="x", timeout=30)
    assert op._deferral_end_time({"ti": ti}, 30) == pytest.approx(datetime.now(UTC).timestamp() + 30, abs=1)


# ------------------------------------------------------------------ reuse rule


@pytest.mark.parametrize(
    ("try_number", "max_tries", "retries", "expected"),
    [
        (1, 0, 0, False),  # no retries configured
        (1, 2, 2, False),  # first try of a new task instance
        (2, 2, 2, True),  # first automatic retry
        (3, 2, 2, True),
        (3, 4, 2, False),  # first try after a clear at try 2: max_tries = 2 + 2
        (4, 4, 2, True),  # automatic retry after that clear
        (2, 1, 0, False),  # cleared once, retries=0: max_tries = 1 + 0
    ],
)
def test_is_automatic_retry(try_number, max_tries, retries, expected):
    assert is_automatic_retry(try_number, max_tries, retries) is expected


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferrable"])
def test_automatic_retries_reattach_instead_of_creating(emu, output, deferrable):
    """Tries 1 and 2 time out while the run is in progress; try 3 sees it finish. One run only."""
    flow = emu.add_flow(seconds_to_finish=2.0)
    dag = make_dag(flow_id=flow, timeout=0.6, retries=4, retry_delay=timedelta(0), deferrable=deferrable)
    result = run_dag(dag, logical_date=LOGICAL)
    assert result.states == {"run": "success"}, result.errors
    assert len(posts(emu)) == 1
    ti = result.task_instances["run"]
    assert ti.try_number >= 2
    text = output()
    if AIRFLOW_V_3_3_PLUS:
        assert "Reattaching to flow run" in text and "created by an earlier try" in text
    else:
        assert "is still running" in text and "instead of starting a second run" in text


def test_first_try_waits_on_a_run_of_the_window_that_is_still_running(emu, output):
    flow = emu.add_flow(seconds_to_finish=1.0)
    existing = FlowServiceHook(retry=FAST).create_run(flow, JAN1, JAN2).run_id
    result = run_dag(make_dag(flow_id=flow), logical_date=LOGICAL)
    assert result.states == {"run": "success"}
    assert result.xcom("run") == existing
    assert len(posts(emu)) == 1
    assert f"Flow run {existing} for this flow and window is still running" in output()


def test_reuse_disabled_always_creates(emu):
    flow = emu.add_flow(polls_to_finish=1)
    existing = FlowServiceHook(retry=FAST).create_run(flow, JAN1, JAN2).run_id
    result = run_dag(make_dag(flow_id=flow, reuse_existing_run=False), logical_date=LOGICAL)
    assert result.states == {"run": "success"}
    assert result.xcom("run") != existing
    assert len(posts(emu)) == 2


def clear_and_rerun(dag: Any, dag_run: Any, task_id: str = "run") -> tuple[int, int]:
    """Clear a finished task instance with Airflow's own ``clear_task_instances`` and run it again.

    Does what the UI's "Clear" and then the scheduler do; the re-run uses the same in-process task
    runner as ``dag.test()`` (a private helper on both Airflow lines). Returns (try_number, max_tries)
    of the re-run.
    """
    from airflow.models.taskinstance import TaskInstance, clear_task_instances
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState

    with create_session() as session:
        ti = (
            session.query(TaskInstance)
            .filter_by(dag_id=dag.dag_id, run_id=dag_run.run_id, task_id=task_id)
            .one()
        )
        if AIRFLOW_V_3_0_PLUS:
            clear_task_instances([ti], session, dag_run_state=DagRunState.RUNNING)
        else:
            clear_task_instances([ti], session, dag=dag, dag_run_state=DagRunState.RUNNING)
        ti.try_number += 1  # the scheduler's step when it schedules the cleared task
        ti.state = TaskInstanceState.SCHEDULED
        session.commit()
        numbers = (ti.try_number, ti.max_tries)
        if AIRFLOW_V_3_0_PLUS:
            from airflow.sdk.definitions.dag import _run_task

            _run_task(ti=ti, task=dag.task_dict[task_id], run_triggerer=True)
        else:
            from airflow.models.dag import _run_task

            ti.task = dag.task_dict[task_id]
            _run_task(ti=ti, inline_trigger=True, session=session)
        session.commit()
        state = (
            session.query(TaskInstance.state)
            .filter_by(dag_id=dag.dag_id, run_id=dag_run.run_id, task_id=task_id)
            .scalar()
        )
    assert str(getattr(state, "value", state)) == "success"
    return numbers


def test_deliberate_clear_creates_a_new_run(emu, output):
    flow = emu.add_flow(polls_to_finish=0)
    dag = make_dag(flow_id=flow, retries=2)
    first = run_dag(dag, logical_date=LOGICAL)
    assert first.states == {"run": "success"}
    first_run = first.xcom("run")
    output()
    try_number, max_tries = clear_and_rerun(dag, first.dag_run)
    # Airflow set max_tries = try_number + retries on clear: the re-run looks like a first try
    assert (try_number, max_tries) == (2, 3)
    assert not is_automatic_retry(try_number, max_tries, 2)
    assert len(posts(emu)) == 2
    assert first_run in emu.runs
    assert "this is a first try (new DAG run or a clear): creating a new run" in output()


def test_new_dag_run_for_an_ingested_window_creates_a_new_run(emu):
    flow = emu.add_flow(polls_to_finish=0)
    dag = make_dag(flow_id=flow, retries=2)
    first = run_dag(dag, logical_date=LOGICAL)
    second = run_dag(dag, logical_date=LOGICAL)
    assert first.states == second.states == {"run": "success"}
    assert len(posts(emu)) == 2


# direct execute() with a task instance that looks like an automatic retry (not reachable with a
# successful earlier try through dag.test()).


class RetryLikeTI:
    """The attributes of a task instance the operator reads, plus an XCom recorder."""

    def __init__(self, try_number: int, max_tries: int):
        self.try_number = try_number
        self.max_tries = max_tries
        self.start_date = datetime.now(UTC)
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


class DictStore:
    """task_state_store's get/set interface over a dict."""

    def __init__(self, data: dict | None = None):
        self.data = dict(data or {})
        self.retention: Any = "unset"

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self.data[key] = value
        self.retention = retention


def finished_run(emu, flow: str, window=(JAN1, JAN2)) -> str:
    hook = FlowServiceHook(retry=FAST)
    run_id = hook.create_run(flow, *window).run_id
    for _ in range(10):
        if hook.get_run(run_id).status.is_terminal:
            return run_id
    raise AssertionError("emulator run did not finish")


def context_for(ti: RetryLikeTI, store: DictStore | None = None) -> dict:
    context: dict[str, Any] = {
        "ti": ti,
        "data_interval_start": pendulum.datetime(2024, 1, 1, tz="UTC"),
        "data_interval_end": pendulum.datetime(2024, 1, 2, tz="UTC"),
    }
    if store is not None:
        context["task_state_store"] = store
    return context


def op_for(flow: str, **kwargs) -> FlowServiceCreateRunOperator:
    return FlowServiceCreateRunOperator(
        task_id="t", flow_id=flow, retries=1, poll_interval=0.01, retry=FAST, **kwargs
    )


def test_retry_adopts_succeeded_run_of_the_window(emu, output):
    flow = emu.add_flow(polls_to_finish=0)
    done = finished_run(emu, flow)
    ti = RetryLikeTI(try_number=2, max_tries=1)
    assert op_for(flow).execute(context_for(ti)) == done
    assert len(posts(emu)) == 1
    assert ti.xcoms["return_value"] == done and flow in ti.xcoms["run_url"]
    assert f"Adopting run {done} created by an earlier try" in output()


@pytest.mark.parametrize(("try_number", "max_tries"), [(1, 1), (3, 3)], ids=["first-try", "after-clear"])
def test_first_try_does_not_adopt_succeeded_run(emu, try_number, max_tries):
    flow = emu.add_flow(polls_to_finish=0)
    done = finished_run(emu, flow)
    run_id = op_for(flow).execute(context_for(RetryLikeTI(try_number, max_tries)))
    assert run_id != done
    assert len(posts(emu)) == 2


@pytest.mark.parametrize("outcome", ["failed", "partialSuccess"])
def test_retry_does_not_adopt_failed_or_refused_partial_run(emu, outcome):
    flow = emu.add_flow(outcome=outcome, polls_to_finish=0)
    done = finished_run(emu, flow)
    with pytest.raises(FlowServiceRunError) as err:  # the new run ends the same way, but it is new
        op_for(flow).execute(context_for(RetryLikeTI(2, 1)))
    assert err.value.run_id != done
    assert len(posts(emu)) == 2


def test_retry_adopts_partial_run_when_allowed(emu):
    flow = emu.add_flow(outcome="partialSuccess", polls_to_finish=0)
    done = finished_run(emu, flow)
    assert op_for(flow, allow_partial_success=True).execute(context_for(RetryLikeTI(2, 1))) == done
    assert len(posts(emu)) == 1


@pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="task_state_store exists on Airflow 3.3+")
class TestTaskStateStore:
    def test_created_run_is_stored_forever(self, emu):
        flow = emu.add_flow(polls_to_finish=0)
        store = DictStore()
        run_id = op_for(flow).execute(context_for(RetryLikeTI(1, 1), store))
        assert store.data[TASK_STATE_KEY] == {
            "run_id": run_id,
            "flow_id": flow,
            "window_start": JAN1,
            "window_end": JAN2,
        }
        from airflow.sdk.execution_time.context import NEVER_EXPIRE

        assert store.retention is NEVER_EXPIRE

    def test_retry_adopts_stored_succeeded_run_without_listing(self, emu, output):
        flow = emu.add_flow(polls_to_finish=0)
        done = finished_run(emu, flow)
        emu.reset_requests()
        store = DictStore(
            {TASK_STATE_KEY: {"run_id": done, "flow_id": flow, "window_start": JAN1, "window_end": JAN2}}
        )
        assert op_for(flow).execute(context_for(RetryLikeTI(2, 1), store)) == done
        assert not posts(emu)
        assert not [r for r in emu.requests if r.method == "GET" and r.path.endswith("/flowservice/runs")]
        assert f"Adopting flow run {done} created by an earlier try of this task" in output()

    def test_retry_reattaches_to_stored_running_run(self, emu, output):
        flow = emu.add_flow(polls_to_finish=3)
        running = FlowServiceHook(retry=FAST).create_run(flow, JAN1, JAN2).run_id
        store = DictStore(
            {TASK_STATE_KEY: {"run_id": running, "flow_id": flow, "window_start": JAN1, "window_end": JAN2}}
        )
        assert op_for(flow).execute(context_for(RetryLikeTI(2, 1), store)) == running
        assert len(posts(emu)) == 1
        assert f"Reattaching to flow run {running}" in output()

    def test_retry_replaces_stored_failed_run(self, emu):
        flow = emu.add_flow(outcome="failed", polls_to_finish=0)
        failed = finished_run(emu, flow)
        store = DictStore(
            {TASK_STATE_KEY: {"run_id": failed, "flow_id": flow, "window_start": JAN1, "window_end": JAN2}}
        )
        with pytest.raises(FlowServiceRunError) as err:  # the new run fails as well, but it is new
            op_for(flow).execute(context_for(RetryLikeTI(2, 1), store))
        assert err.value.run_id != failed
        assert len(posts(emu)) == 2
        assert store.data[TASK_STATE_KEY]["run_id"] == err.value.run_id

    def test_stored_run_of_another_window_is_ignored(self, emu):
        flow = emu.add_flow(polls_to_finish=0)
        other = finished_run(emu, flow, window=(JAN1 - 86400, JAN1))
        store = DictStore(
            {
                TASK_STATE_KEY: {
                    "run_id": other,
                    "flow_id": flow,
                    "window_start": JAN1 - 86400,
                    "window_end": JAN1,
                }
            }
        )
        run_id = op_for(flow).execute(context_for(RetryLikeTI(2, 1), store))
        assert run_id != other
        assert len(posts(emu)) == 2


# ------------------------------------------------------------------ deferred completion and on_kill


def summary(status: str, errors=()) -> dict:
    return {
        "run_id": "r-1",
        "flow_id": "f",
        "status": status,
        "errors": list(errors),
        "window_start": JAN1,
        "window_end": JAN2,
        "records": {},
        "files": {},
        "duration_seconds": 1.0,
    }


def test_execute_complete_rules():
    op = FlowServiceCreateRunOperator(task_id="t", flow_id="x", timeout=60)
    ok = {
        "status": "terminal",
        "run_id": "r-1",
        "run_status": "success",
        "summary": summary("success"),
        "message": "m",
    }
    assert op.execute_complete({}, ok) == "r-1"
    failed = {
        **ok,
        "run_status": "failed",
        "summary": summary("failed", [{"code": "C-1", "message": "boom"}]),
    }
    with pytest.raises(FlowServiceRunError, match="C-1: boom"):
        op.execute_complete({}, failed)
    timeout = {
        "status": "timeout",
        "run_id": "r-1",
        "run_status": "inProgress",
        "summary": None,
        "message": "Timed out waiting for flow run r-1.",
    }
    with pytest.raises(FlowServiceTimeoutError, match=r"Timed out waiting for flow run r-1\..*60 s") as err:
        op.execute_complete({}, timeout)
    assert err.value.last_status == "inProgress"
    error = {
        "status": "error",
        "run_id": "r-1",
        "run_status": None,
        "summary": None,
        "message": "Stopped waiting for flow run r-1: 404",
    }
    with pytest.raises(FlowServiceError, match="Stopped waiting for flow run r-1: 404"):
        op.execute_complete({}, error)


def test_on_kill_says_the_run_goes_on(output):
    op = FlowServiceCreateRunOperator(task_id="t", flow_id="x")
    op.on_kill()
    op._run_id = "run-42"
    op.on_kill()
    text = output()
    assert "no endpoint to cancel a run" in text
    assert re.search(r"flow run run-42 goes on in Experience Platform", text)
