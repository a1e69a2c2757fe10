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

from airflow_provider_flowservice._retry import RetryPolicy
from airflow_provider_flowservice.exceptions import (
    FlowServiceConfigError,
    FlowServiceError,
    FlowServiceRunError,
    FlowServiceTimeoutError,
)
from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook
from airflow_provider_flowservice.links.flow_service import FlowServiceRunLink
from airflow_provider_flowservice.operators.flow_service import (
    TASK_STATE_KEY,
    TASK_STATE_RETENTION,
    FlowServiceCreateRunOperator,
    first_try_of_sequence,
    is_automatic_retry,
)
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
try:  # the public name where Airflow has it (3.x), as in the example DAGs
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:
    from airflow.timetables.interval import CronDataIntervalTimetable  # type: ignore[no-redef]

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
    # The URL ends its line: no ")" or other character for clickable-link detection to take in.
    # (a console renderer may append the logger's name after the message, separated by spaces;
    # Airflow 2 may echo the line to two handlers)
    url = result.xcom("run", key="run_url")
    url_lines = [line for line in text.splitlines() if f"Flow run id: {run_id}" in line]
    assert url_lines
    for url_line in url_lines:
        after_url = url_line.split(url, 1)[1]
        assert after_url == "" or after_url[0].isspace(), url_line
    # logged on change, not on each of the 5 polls that saw it (Airflow 2 may echo a line to two handlers)
    assert 1 <= text.count(f"Flow run {run_id} status: inProgress") <= 2
    assert f"Flow run {run_id} finished: status 'success'" in text
    assert "records:  input 100, output 100, failed 0" in text
    assert ("Deferring" in text) is deferrable


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferrable"])
def test_wait_holds_off_as_long_as_a_retry_after_beyond_the_retry_budget(emu, deferrable):
    # FAST allows 2 s in all: a 429 asking for 2.5 s ends the hook's call at once, and the wait
    # (blocking loop or trigger) asks again only after those 2.5 s, not at its 0.05 s poll interval.
    flow = emu.add_flow(polls_to_finish=2)
    emu.inject("429", method="GET", path="/runs/", retry_after="2.5")
    result = run_dag(make_dag(flow_id=flow, deferrable=deferrable), logical_date=LOGICAL)
    assert result.states == {"run": "success"}, result.errors
    run_id = result.xcom("run")
    gets = [r for r in emu.requests if r.method == "GET" and r.path.endswith(f"/runs/{run_id}")]
    (refused,) = [i for i, r in enumerate(gets) if r.fault == "429"]
    assert gets[refused + 1].time - gets[refused].time >= 2.4


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
    # the deferred path names the run's page too (execute_complete reads it back from XCom)
    assert f"See {result.xcom('run', key='run_url')}" in str(error)
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
    from airflow_provider_flowservice.triggers.flow_service import MIN_REQUEST_SECONDS, deferral_end_time

    started = datetime.now(UTC) - timedelta(seconds=40)
    limit = timedelta(seconds=100)
    # margin: the trigger's last poll (MIN_REQUEST_SECONDS) + min(10 s, 5 % of the limit)
    end = deferral_end_time(3600, execution_timeout=limit, started_at=started)
    assert end == pytest.approx(started.timestamp() + 100 - MIN_REQUEST_SECONDS - 5, abs=0.01)
    assert deferral_end_time(30, execution_timeout=None, started_at=started) == pytest.approx(
        datetime.now(UTC).timestamp() + 30, abs=1
    )
    long = deferral_end_time(10**6, execution_timeout=timedelta(hours=2), started_at=started)
    assert long == pytest.approx(started.timestamp() + 7200 - MIN_REQUEST_SECONDS - 10, abs=0.01)


def test_deferred_operator_uses_the_clipped_deadline_and_its_retry_values(emu):
    """The trigger gets the deadline clipped by execution_timeout and the retry policy's values."""
    from airflow.providers.common.compat.sdk import TaskDeferred

    from airflow_provider_flowservice.triggers.flow_service import deferral_end_time

    flow = emu.add_flow(seconds_to_finish=600)
    policy = RetryPolicy(max_attempts=4, initial_backoff=0.25, max_backoff=3.0, max_total_seconds=42.0)
    op = FlowServiceCreateRunOperator(
        task_id="t", flow_id=flow, deferrable=True, retry=policy, execution_timeout=timedelta(seconds=100)
    )
    ti = RetryLikeTI(1, 0)
    ti.start_date = datetime.now(UTC) - timedelta(seconds=40)
    with pytest.raises(TaskDeferred) as caught:
        op.execute(context_for(ti))
    kwargs = caught.value.trigger.serialize()[1]
    assert kwargs["end_time"] == pytest.approx(
        deferral_end_time(100, execution_timeout=timedelta(seconds=100), started_at=ti.start_date), abs=0.01
    )
    assert kwargs["retry"] == policy.to_dict()
    assert {k: kwargs["retry"][k] for k in ("max_attempts", "initial_backoff", "max_backoff")} == {
        "max_attempts": 4,
        "initial_backoff": 0.25,
        "max_backoff": 3.0,
    }
    assert kwargs["retry"]["max_total_seconds"] == 42.0
    assert RetryPolicy.from_dict(kwargs["retry"]) == policy
    # without retry=...: the hook's default policy still travels as values, not as None
    op = FlowServiceCreateRunOperator(task_id="u", flow_id=flow, deferrable=True, reuse_existing_run=False)
    with pytest.raises(TaskDeferred) as caught:
        op.execute(context_for(RetryLikeTI(1, 0)))
    assert caught.value.trigger.serialize()[1]["retry"] == RetryPolicy().to_dict()


_DEFAULT_DEFERRABLE_SCRIPT = """
from airflow_provider_flowservice.operators.flow_service import FlowServiceCreateRunOperator
from airflow_provider_flowservice.sensors.flow_service import FlowServiceRunSensor
op = FlowServiceCreateRunOperator(task_id="a", flow_id="x")
sensor = FlowServiceRunSensor(task_id="b", run_id="r")
explicit = FlowServiceCreateRunOperator(task_id="c", flow_id="x", deferrable=False)
print(op.deferrable, sensor.deferrable, explicit.deferrable)
"""


@pytest.mark.parametrize(("setting", "expected"), [(None, "False"), ("True", "True"), ("False", "False")])
def test_deferrable_defaults_to_operators_default_deferrable(setting, expected):
    """``[operators] default_deferrable`` is read when the module is imported (as Airflow's own
    operators do): a fresh interpreter, like a DAG processor or worker, with the setting in its
    environment gets it as the default of both classes; an explicit argument still wins."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"}
    if setting is not None:
        env["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"] = setting
    proc = subprocess.run(
        [sys.executable, "-c", _DEFAULT_DEFERRABLE_SCRIPT],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-3:] == [expected, expected, "False"]


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


def clear_and_rerun(
    dag: Any,
    dag_run: Any,
    task_id: str = "run",
    *,
    before: Any = None,
    dag_run_still_running: bool = False,
    expect: str = "success",
) -> tuple[int, int]:
    """Clear a finished task instance with Airflow's own ``clear_task_instances`` and run it again.

    Does what the UI's "Clear" and then the scheduler do, automatic retries included (each
    up_for_retry try is scheduled again, as ``dag.test()`` does); the tries use the same in-process
    task runner as ``dag.test()`` (a private helper on both Airflow lines). ``before()`` runs right
    after the clear; ``dag_run_still_running`` clears as if other tasks of the DAG run were still
    running (Airflow then keeps the DAG run's start date). Returns (try_number, max_tries) of the
    first try after the clear.
    """
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance, clear_task_instances
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState

    def load(session: Any) -> Any:
        return (
            session.query(TaskInstance)
            .filter_by(dag_id=dag.dag_id, run_id=dag_run.run_id, task_id=task_id)
            .one()
        )

    with create_session() as session:
        if dag_run_still_running:
            dr = session.query(DagRun).filter_by(dag_id=dag.dag_id, run_id=dag_run.run_id).one()
            dr.state = DagRunState.RUNNING
            session.commit()
        ti = load(session)
        if AIRFLOW_V_3_0_PLUS:
            clear_task_instances([ti], session, dag_run_state=DagRunState.RUNNING)
        else:
            clear_task_instances([ti], session, dag=dag, dag_run_state=DagRunState.RUNNING)
        session.commit()
        if before is not None:
            before()
        numbers: tuple[int, int] | None = None
        for _ in range(10):
            ti = load(session)
            ti.try_number += 1  # the scheduler's step when it schedules the cleared (or retried) task
            ti.state = TaskInstanceState.SCHEDULED
            session.commit()
            numbers = numbers or (ti.try_number, ti.max_tries)
            if AIRFLOW_V_3_0_PLUS:
                from airflow.sdk.definitions.dag import _run_task

                _run_task(ti=ti, task=dag.task_dict[task_id], run_triggerer=True)
            else:
                from airflow.models.dag import _run_task

                ti.task = dag.task_dict[task_id]
                with contextlib.suppress(Exception):  # dag.test() logs a failed try and goes on
                    _run_task(ti=ti, inline_trigger=True, session=session)
            session.commit()
            session.expire_all()
            state = str(getattr(load(session).state, "value", load(session).state))
            if state != "up_for_retry":
                break
    assert state == expect
    assert numbers is not None
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
    assert "Re-ingesting window" in output()


@pytest.mark.parametrize(
    "dag_run_still_running",
    [False, pytest.param(True, marks=pytest.mark.skipif(
        not AIRFLOW_V_3_3_PLUS, reason="before 3.3 only the DAG run's start date marks a clear: see README"
    ))],
    ids=["dag-run-finished", "dag-run-still-running"],
)
def test_clear_then_failure_before_create_still_re_ingests(emu, output, dag_run_still_running):
    """Clear; the first try after it fails before creating a run (here: the run look-up fails, as
    in an IMS or Flow Service outage); its automatic retry must create a new run, not adopt the
    run from before the clear."""
    flow = emu.add_flow(polls_to_finish=0)
    dag = make_dag(flow_id=flow, retries=2, retry_delay=timedelta(0))
    first = run_dag(dag, logical_date=LOGICAL)
    assert first.states == {"run": "success"}
    before_clear = first.xcom("run")
    output()

    def outage() -> None:  # every attempt of the next run look-up fails: that try fails
        emu.inject("500", method="GET", path="/flowservice/runs", times=FAST.max_attempts)

    try_number, max_tries = clear_and_rerun(
        dag, first.dag_run, before=outage, dag_run_still_running=dag_run_still_running
    )
    assert (try_number, max_tries) == (2, 3)
    assert len(posts(emu)) == 2  # one before the clear, one after: re-ingested
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, task_id="run").one()
        assert ti.try_number == 3  # the automatic retry did it
        new_run = ti.xcom_pull(task_ids="run")
    assert new_run != before_clear and new_run in emu.runs


def test_automatic_retry_adopts_a_run_that_finished_meanwhile(emu, output):
    """A real retry (dag.test()): try 1 times out while the run is in progress, the run then ends
    successfully, and try 2 adopts it instead of creating a second run."""
    flow = emu.add_flow(seconds_to_finish=0.8)
    dag = make_dag(flow_id=flow, timeout=0.2, retries=1, retry_delay=timedelta(seconds=1.5))
    result = run_dag(dag, logical_date=LOGICAL)
    assert result.states == {"run": "success"}, result.errors
    assert len(posts(emu)) == 1
    assert result.task_instances["run"].try_number == 2
    text = output()
    if AIRFLOW_V_3_3_PLUS:
        assert "Adopting flow run" in text and "it already ended with status success" in text
    else:
        assert "Adopting run" in text and "this try is an automatic retry" in text


def test_new_dag_run_for_an_ingested_window_creates_a_new_run(emu):
    flow = emu.add_flow(polls_to_finish=0)
    dag = make_dag(flow_id=flow, retries=2)
    first = run_dag(dag, logical_date=LOGICAL)
    second = run_dag(dag, logical_date=LOGICAL)
    assert first.states == second.states == {"run": "success"}
    assert len(posts(emu)) == 2


# direct execute() with a task instance that looks like an automatic retry (not reachable with a
# successful earlier try through dag.test()).

AN_HOUR_AGO = datetime.now(UTC) - timedelta(hours=1)


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
        self.writes: list[dict] = []

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self.data[key] = value
        self.writes.append(dict(value))
        self.retention = retention


def finished_run(emu, flow: str, window=(JAN1, JAN2)) -> str:
    hook = FlowServiceHook(retry=FAST)
    run_id = hook.create_run(flow, *window).run_id
    for _ in range(10):
        if hook.get_run(run_id).status.is_terminal:
            return run_id
    raise AssertionError("emulator run did not finish")


def context_for(ti: RetryLikeTI, store: DictStore | None = None, *, dag_run_started=AN_HOUR_AGO) -> dict:
    from types import SimpleNamespace

    context: dict[str, Any] = {
        "ti": ti,
        "dag_run": SimpleNamespace(start_date=dag_run_started),
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


def entry(run_id: str | None, flow: str, *, first_try: int = 1, window=(JAN1, JAN2), **more) -> dict:
    """A task_state_store entry as the operator writes it (sequence begun at try ``first_try``)."""
    return {
        "run_id": run_id,
        "flow_id": flow,
        "window_start": window[0],
        "window_end": window[1],
        "first_try": first_try,
        "create_attempted": run_id is not None,
        "pre_existing": [],
        **more,
    }


def test_first_try_of_sequence():
    assert first_try_of_sequence(max_tries=2, retries=2) == 1  # new task instance
    assert first_try_of_sequence(max_tries=5, retries=2) == 4  # cleared after try 3
    assert first_try_of_sequence(max_tries=3, retries=0) == 4  # cleared after try 3, no retries


def test_retry_adopts_succeeded_run_of_the_window(emu, output):
    flow = emu.add_flow(polls_to_finish=0)
    done = finished_run(emu, flow)
    ti = RetryLikeTI(try_number=2, max_tries=1)
    assert op_for(flow).execute(context_for(ti)) == done
    assert len(posts(emu)) == 1
    assert ti.xcoms["return_value"] == done and flow in ti.xcoms["run_url"]
    assert f"Adopting run {done} created by an earlier try" in output()


def test_retry_does_not_adopt_a_run_from_before_the_dag_run_started(emu, output):
    """Without a stored entry (Airflow < 3.3) the DAG run's start date, which clearing a finished
    DAG run resets, separates this sequence's runs from older ones."""
    flow = emu.add_flow(polls_to_finish=0)
    done = finished_run(emu, flow)
    ti = RetryLikeTI(try_number=2, max_tries=1)
    later = datetime.now(UTC) + timedelta(seconds=1)
    run_id = op_for(flow).execute(context_for(ti, dag_run_started=later))
    assert run_id != done
    assert len(posts(emu)) == 2
    assert f"Latest run {done} for this window ended with status success, but it is older" in output()


def test_create_excludes_the_runs_its_look_up_saw(emu, monkeypatch):
    """The hook's safe create must never adopt a run that existed before this create."""
    flow = emu.add_flow(outcome="failed", polls_to_finish=0)
    older = [finished_run(emu, flow) for _ in range(2)]
    seen: dict[str, Any] = {}
    original = FlowServiceHook.create_run

    def spy(self, *args, **kwargs):
        seen.update(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FlowServiceHook, "create_run", spy)
    with pytest.raises(FlowServiceRunError):
        op_for(flow).execute(context_for(RetryLikeTI(1, 1)))
    assert sorted(seen["exclude_run_ids"]) == sorted(older)


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


@pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="Airflow 2 renders links in the webserver")
def test_link_xcom_is_pushed_with_the_run_id(emu):
    """Airflow 3's UI reads the link's own XCom key: it is there before any waiting."""
    flow = emu.add_flow(seconds_to_finish=600)
    ti = RetryLikeTI(1, 0)
    op_for(flow, wait_for_completion=False).execute(context_for(ti))
    assert ti.xcoms[FlowServiceRunLink().xcom_key] == ti.xcoms["run_url"]


@pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="task_state_store exists on Airflow 3.3+")
class TestTaskStateStore:
    def test_created_run_is_stored_with_its_sequence(self, emu):
        flow = emu.add_flow(polls_to_finish=0)
        store = DictStore()
        run_id = op_for(flow).execute(context_for(RetryLikeTI(1, 1), store))
        assert store.data[TASK_STATE_KEY] == entry(run_id, flow, first_try=1, max_tries=1, try_number=1)
        # the first write, before anything else, starts the sequence; the next one comes before the POST
        assert [w["run_id"] for w in store.writes] == [None, None, run_id]
        assert [w["create_attempted"] for w in store.writes] == [False, True, True]
        assert store.retention == TASK_STATE_RETENTION == timedelta(days=30)

    def test_retry_adopts_stored_succeeded_run_without_listing(self, emu, output):
        flow = emu.add_flow(polls_to_finish=0)
        done = finished_run(emu, flow)
        emu.reset_requests()
        store = DictStore({TASK_STATE_KEY: entry(done, flow)})
        assert op_for(flow).execute(context_for(RetryLikeTI(2, 1), store)) == done
        assert not posts(emu)
        assert not [r for r in emu.requests if r.method == "GET" and r.path.endswith("/flowservice/runs")]
        assert f"Adopting flow run {done} created by an earlier try of this task" in output()

    def test_retry_reattaches_to_stored_running_run(self, emu, output):
        flow = emu.add_flow(polls_to_finish=3)
        running = FlowServiceHook(retry=FAST).create_run(flow, JAN1, JAN2).run_id
        store = DictStore({TASK_STATE_KEY: entry(running, flow)})
        assert op_for(flow).execute(context_for(RetryLikeTI(2, 1), store)) == running
        assert len(posts(emu)) == 1
        assert f"Reattaching to flow run {running}" in output()

    def test_retry_replaces_stored_failed_run(self, emu):
        flow = emu.add_flow(outcome="failed", polls_to_finish=0)
        failed = finished_run(emu, flow)
        store = DictStore({TASK_STATE_KEY: entry(failed, flow)})
        with pytest.raises(FlowServiceRunError) as err:  # the new run fails as well, but it is new
            op_for(flow).execute(context_for(RetryLikeTI(2, 1), store))
        assert err.value.run_id != failed
        assert len(posts(emu)) == 2
        assert store.data[TASK_STATE_KEY]["run_id"] == err.value.run_id

    def test_stored_run_of_another_window_is_ignored(self, emu):
        flow = emu.add_flow(polls_to_finish=0)
        other = finished_run(emu, flow, window=(JAN1 - 86400, JAN1))
        store = DictStore({TASK_STATE_KEY: entry(other, flow, window=(JAN1 - 86400, JAN1))})
        run_id = op_for(flow).execute(context_for(RetryLikeTI(2, 1), store))
        assert run_id != other
        assert len(posts(emu)) == 2

    def test_run_stored_before_a_clear_is_not_trusted(self, emu, output):
        """Retry 4 of the sequence begun at try 3 (cleared after try 2) finds the entry of the
        sequence begun at try 1 (try 3 could not write its own): it is not trusted, and the run it
        names, older than the DAG run's start (reset by the clear), is not adopted."""
        flow = emu.add_flow(polls_to_finish=0)
        before_clear = finished_run(emu, flow)
        store = DictStore({TASK_STATE_KEY: entry(before_clear, flow, first_try=1)})
        ti = RetryLikeTI(try_number=4, max_tries=3)  # cleared after try 2: max_tries = 2 + retries (1)
        cleared_at = datetime.now(UTC) + timedelta(seconds=1)
        run_id = op_for(flow).execute(context_for(ti, store, dag_run_started=cleared_at))
        assert run_id != before_clear
        assert len(posts(emu)) == 2
        assert "an earlier sequence of tries stored it (the task was cleared since)" in output()
        assert store.data[TASK_STATE_KEY]["first_try"] == 3

    def test_retry_after_a_first_try_that_created_nothing_creates(self, emu):
        """The first try after a clear stored its sequence but failed before creating: a finished
        run of the window is older than the sequence, so the retry creates a new one."""
        flow = emu.add_flow(polls_to_finish=0)
        before_clear = finished_run(emu, flow)
        store = DictStore({TASK_STATE_KEY: entry(None, flow, first_try=3)})
        run_id = op_for(flow).execute(context_for(RetryLikeTI(4, 3), store))
        assert run_id != before_clear
        assert len(posts(emu)) == 2

    def test_retry_adopts_run_created_by_the_sequence_before_the_id_was_saved(self, emu):
        """The worker died between the POST and saving the run id: the run was not among those
        that existed before the sequence's create, so the retry adopts it."""
        flow = emu.add_flow(polls_to_finish=0)
        before_clear = finished_run(emu, flow)
        created = finished_run(emu, flow)
        stored = entry(None, flow, first_try=3, create_attempted=True, pre_existing=[before_clear])
        store = DictStore({TASK_STATE_KEY: stored})
        assert op_for(flow).execute(context_for(RetryLikeTI(4, 3), store)) == created
        assert len(posts(emu)) == 2  # both made by finished_run above: no new one

    def test_a_store_that_fails_never_fails_the_task(self, emu, output):
        class BrokenStore(DictStore):
            def get(self, key, default=None):
                raise RuntimeError("store down")

            def set(self, key, value, *, retention=None):
                raise RuntimeError("store down")

        flow = emu.add_flow(polls_to_finish=0)
        done = finished_run(emu, flow)
        assert op_for(flow).execute(context_for(RetryLikeTI(2, 1), BrokenStore())) == done
        assert "Could not read task_state_store" in output()


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


# ------------------------------------------------------------------ issue 10 regressions


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferrable"])
def test_a_run_that_completes_with_a_status_we_do_not_know_fails_at_once_and_a_retry_creates(
    emu, deferrable
):
    """``Cancelled`` with completedAtUTC: the try fails at once (not at its timeout) naming the
    status, and the automatic retry creates a new run instead of reattaching to that one."""
    flow = emu.add_flow(final_status="Cancelled", polls_to_finish=1)
    dag = make_dag(flow_id=flow, timeout=60, retries=1, retry_delay=timedelta(0), deferrable=deferrable)
    started = datetime.now(UTC)
    result = run_dag(dag, logical_date=LOGICAL)
    assert (datetime.now(UTC) - started).total_seconds() < 30
    assert result.states == {"run": "failed"}
    assert result.task_instances["run"].try_number == 2
    error = result.errors["run"]
    assert isinstance(error, FlowServiceRunError)
    assert "with status 'Cancelled', which this provider does not know" in str(error)
    assert len(posts(emu)) == 2  # the retry did not reattach to the Cancelled run
    assert error.run_id == posts_run_ids(emu)[-1]


def posts_run_ids(emu) -> list[str]:
    return [r["id"] for r in emu.runs_for_flow(next(iter(emu.flows)))]


@pytest.mark.parametrize("wait", [False, True], ids=["no-wait", "wait"])
@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferrable"])
def test_do_xcom_push_false_pushes_no_return_value(emu, wait, deferrable):
    flow = emu.add_flow(polls_to_finish=1)
    dag = make_dag(flow_id=flow, do_xcom_push=False, wait_for_completion=wait, deferrable=deferrable)
    result = run_dag(dag, logical_date=LOGICAL)
    assert result.states == {"run": "success"}, result.errors
    assert result.xcom("run") is None
    assert flow in result.xcom("run", key="run_url")  # the link's URL is not the return value
    assert len(posts(emu)) == 1


def test_first_try_over_a_finished_run_says_it_re_ingests(emu, output):
    flow = emu.add_flow(polls_to_finish=0)
    done = finished_run(emu, flow)
    output()
    run_id = op_for(flow).execute(context_for(RetryLikeTI(1, 1)))
    assert run_id != done
    text = output()
    assert "Re-ingesting window" in text
    assert f"previous run {done} ended with status success" in text


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferrable"])
def test_a_create_that_fails_before_a_run_exists_logs_no_missing_xcom(emu, output, deferrable):
    flow = emu.add_flow(state="disabled")
    result = run_dag(make_dag(flow_id=flow, deferrable=deferrable), logical_date=LOGICAL)
    assert result.states == {"run": "failed"}
    text = output()
    assert "XCom not found" not in text and "run_url" not in text.replace("run_url=", "")


def bury(emu, flow: str, count: int) -> None:
    """``count`` newer runs of other (hourly, later) windows of ``flow``."""
    hook = FlowServiceHook(retry=FAST)
    for i in range(count):
        hook.create_run(flow, JAN2 + 3600 * i, JAN2 + 3600 * (i + 1))


def list_calls(emu) -> int:
    return sum(1 for r in emu.requests if r.method == "GET" and r.path.endswith("/flowservice/runs"))


def test_retry_adopts_its_run_under_350_newer_runs_without_a_duplicate(emu, output):
    """Issue 10: the look-up read at most 20 pages, so on Airflow < 3.3 (no task state store, as
    here) a retry missed its own run of an older window and created a second one."""
    flow = emu.add_flow(kind="file", polls_to_finish=0)
    done = finished_run(emu, flow)
    bury(emu, flow, 350)
    emu.reset_requests()
    assert op_for(flow).execute(context_for(RetryLikeTI(try_number=2, max_tries=1))) == done
    assert not posts(emu)
    assert list_calls(emu) <= 2


def test_a_refused_window_filter_on_a_long_history_creates_nothing(emu):
    flow = emu.add_flow(kind="file", polls_to_finish=0)
    finished_run(emu, flow)
    bury(emu, flow, 350)
    emu.refused_filter_fields = {"params.windowStartTime", "params.windowEndTime"}
    emu.reset_requests()
    with pytest.raises(FlowServiceError, match="No run was created"):
        op_for(flow).execute(context_for(RetryLikeTI(try_number=2, max_tries=1)))
    assert not posts(emu)


@pytest.mark.skipif(
    not AIRFLOW_V_3_3_PLUS,
    reason="2.11 records a try's max_tries (TaskInstanceHistory) only for a task instance a worker "
    "ran as RUNNING; dag.test() does not, so only 3.3's stored entry is tested",
)
def test_a_retry_is_told_by_what_airflow_recorded_not_by_the_current_retries(emu, output):
    """Issue 10: ``retries`` lowered after try 1 made ``max_tries - retries + 1`` call try 2 a
    first try, so it re-ingested (a duplicate) instead of adopting the run try 1 created."""
    flow = emu.add_flow(seconds_to_finish=0.8)

    def retries_to_zero(context: Any) -> None:  # the user lowers retries before the retry starts
        dag.task_dict["run"].retries = 0  # the task object the next try is prepared from

    dag = make_dag(
        flow_id=flow, timeout=0.2, retries=1, retry_delay=timedelta(seconds=1.5),
        on_retry_callback=retries_to_zero,
    )
    result = run_dag(dag, logical_date=LOGICAL)
    assert result.task_instances["run"].try_number == 2
    assert dag.task_dict["run"].retries == 0  # the callback ran on the task the retry used
    assert result.states == {"run": "success"}, result.errors
    assert len(posts(emu)) == 1
    assert "Re-ingesting" not in output()


def test_without_a_dag_run_start_date_a_retry_does_not_adopt(emu, output):
    flow = emu.add_flow(polls_to_finish=0)
    done = finished_run(emu, flow)
    run_id = op_for(flow).execute(context_for(RetryLikeTI(try_number=2, max_tries=1), dag_run_started=None))
    assert run_id != done
    assert len(posts(emu)) == 2
    assert f"Not adopting flow run {done}: the DAG run has no start date" in output()


@pytest.mark.skipif(
    not AIRFLOW_V_3_3_PLUS,
    reason="2.11 records a try's max_tries (TaskInstanceHistory) only for a task instance a worker "
    "ran as RUNNING; the in-process runner of these tests does not, so only 3.3's stored entry is tested",
)
def test_a_retry_after_a_clear_is_told_by_what_airflow_recorded_not_by_the_current_retries(emu, output):
    """The same as above after a clear, where Airflow 2.11 records each try's max_tries (task
    instance history) and 3.3 the stored entry: try 2 (first after the clear) creates a run and
    times out, ``retries`` is lowered, try 3 (its automatic retry) must adopt that run."""
    import time as _time

    emu.polls_to_finish = 0
    flow = emu.add_flow()

    def retries_to_zero(context: Any) -> None:
        dag.task_dict["run"].retries = 0  # the task object the next try is prepared from
        _time.sleep(1.0)  # the run of try 2 finishes meanwhile

    dag = make_dag(flow_id=flow, timeout=0.2, retries=1, on_retry_callback=retries_to_zero)
    first = run_dag(dag, logical_date=LOGICAL)
    assert first.states == {"run": "success"}, first.errors

    def slow_runs() -> None:
        emu.seconds_to_finish = 0.6

    try_number, max_tries = clear_and_rerun(dag, first.dag_run, before=slow_runs)
    assert (try_number, max_tries) == (2, 2)  # max_tries = try 1 + retries 1
    assert dag.task_dict["run"].retries == 0
    assert len(posts(emu)) == 2  # before the clear, and try 2's re-ingestion: try 3 adopted it
