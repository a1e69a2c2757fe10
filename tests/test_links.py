"""FlowServiceRunLink: the run URL from XCom, "" without one, and never a connection lookup."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pendulum
import pytest

from airflow_provider_flowservice._retry import RetryPolicy
from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook
from airflow_provider_flowservice.links.flow_service import RUN_URL_XCOM_KEY, FlowServiceRunLink
from airflow_provider_flowservice.operators.flow_service import FlowServiceCreateRunOperator
from airflow_provider_flowservice.sensors.flow_service import FlowServiceRunSensor
from airflow_provider_flowservice.version_compat import AIRFLOW_V_3_0_PLUS
from tests.e2e.harness import run_dag

if AIRFLOW_V_3_0_PLUS:
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
else:
    from airflow import DAG
    from airflow.operators.python import PythonOperator

    with contextlib.suppress(ImportError):  # Airflow 2 maps FAB's user table for run notes
        import airflow.providers.fab.auth_manager.models  # noqa: F401
try:  # the public name where Airflow has it (3.x), as in the example DAGs
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:
    from airflow.timetables.interval import CronDataIntervalTimetable  # type: ignore[no-redef]

pytestmark = pytest.mark.timeout(180)

LOGICAL = pendulum.datetime(2024, 1, 2, tz="UTC")
CONN_ENV = "AIRFLOW_CONN_FLOW_SERVICE_DEFAULT"


def read_link_without_connection(**context: Any) -> str:
    """Runs as a task: render the upstream task's link with no Flow Service connection defined."""
    operator = context["dag"].get_task("run")
    ti = context["ti"]
    key = SimpleNamespace(dag_id=ti.dag_id, task_id="run", run_id=ti.run_id, map_index=-1)
    saved = os.environ.pop(CONN_ENV)
    try:
        return FlowServiceRunLink().get_link(operator, ti_key=key)
    finally:
        os.environ[CONN_ENV] = saved


def link_dag(flow_id: str) -> Any:
    with DAG(
        f"link_test_{datetime.now(UTC).strftime('%H%M%S%f')}",
        schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
        start_date=pendulum.datetime(2023, 1, 1, tz="UTC"),
        catchup=False,
    ) as dag:
        run = FlowServiceCreateRunOperator(
            task_id="run",
            flow_id=flow_id,
            poll_interval=0.05,
            retry=RetryPolicy(max_attempts=1),
        )
        check = PythonOperator(
            task_id="check", python_callable=read_link_without_connection, trigger_rule="all_done"
        )
        run >> check
    return dag


@pytest.fixture
def emu(airflow_db, flow_service_conn):
    return flow_service_conn


def test_link_shape():
    link = FlowServiceRunLink()
    assert link.name == "Dataflow runs (Experience Platform)"
    assert any(isinstance(x, FlowServiceRunLink) for x in FlowServiceCreateRunOperator.operator_extra_links)


def test_link_returns_the_run_url_from_xcom(emu):
    flow = emu.add_flow(polls_to_finish=0)
    result = run_dag(link_dag(flow), logical_date=LOGICAL)
    assert result.states == {"run": "success", "check": "success"}
    run_url = result.xcom("run", key=RUN_URL_XCOM_KEY)
    assert run_url.startswith("https://") and flow in run_url
    assert result.xcom("check") == run_url  # rendered with no connection defined
    if AIRFLOW_V_3_0_PLUS:
        # Airflow 3 renders links in the worker when the task ends and the UI reads this XCom
        assert result.xcom("run", key=FlowServiceRunLink().xcom_key) == run_url


def test_link_is_empty_without_a_run(emu):
    result = run_dag(link_dag("not-a-uuid"), logical_date=LOGICAL)
    assert result.states == {"run": "failed", "check": "success"}
    assert result.xcom("check") == ""
    assert emu.requests == []
    if AIRFLOW_V_3_0_PLUS:
        assert result.xcom("run", key=FlowServiceRunLink().xcom_key) == ""


class LinkWatcher(threading.Thread):
    """Polls the metadata database, as Airflow 3's API server does, for a task's link XCom."""

    def __init__(self, dag_id: str, task_id: str):
        super().__init__(daemon=True)
        self.dag_id, self.task_id = dag_id, task_id
        self.stop = threading.Event()
        self.seen_at: float | None = None
        self.value: Any = None

    def run(self) -> None:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        query = select(XComModel.value).where(
            XComModel.dag_id == self.dag_id,
            XComModel.task_id == self.task_id,
            XComModel.key == FlowServiceRunLink().xcom_key,
        )
        while not self.stop.is_set():
            with contextlib.suppress(Exception):  # sqlite may be busy for a moment: look again
                with create_session() as session:
                    value = session.scalars(query).first()
                if value:
                    self.seen_at, self.value = time.time(), value
                    return
            time.sleep(0.05)


@pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="Airflow 2 renders links by calling get_link")
@pytest.mark.parametrize("kind", ["operator", "sensor"])
def test_link_shows_while_the_task_is_still_waiting(emu, kind):
    """Airflow 3 reads the link's XCom, which the task runner writes only when the task ends: the
    operator (blocking wait) and the sensor (poke mode) write it as soon as the run is known."""
    flow = emu.add_flow(seconds_to_finish=2.0)
    with DAG(
        f"link_wait_{kind}_{datetime.now(UTC).strftime('%H%M%S%f')}",
        schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
        start_date=pendulum.datetime(2023, 1, 1, tz="UTC"),
        catchup=False,
    ) as dag:
        if kind == "operator":
            FlowServiceCreateRunOperator(
                task_id="wait", flow_id=flow, poll_interval=0.05, retry=RetryPolicy(max_attempts=1)
            )
            run_id = None
        else:
            run_id = FlowServiceHook().create_run(flow, 1704067200, 1704153600).run_id
            FlowServiceRunSensor(task_id="wait", run_id=run_id, mode="poke", poll_interval=0.05, timeout=60)
    watcher = LinkWatcher(dag.dag_id, "wait")
    watcher.start()
    try:
        result = run_dag(dag, logical_date=LOGICAL)
    finally:
        watcher.stop.set()
        watcher.join(timeout=10)
    assert result.states == {"wait": "success"}, result.errors
    assert watcher.seen_at is not None, "the link's XCom never appeared while the task ran"
    run_id = run_id or result.xcom("wait")
    later_polls = [
        r for r in emu.requests
        if r.method == "GET" and r.path.endswith(f"/runs/{run_id}") and r.time > watcher.seen_at
    ]
    assert len(later_polls) >= 2  # the task was still waiting when the UI could show the link
    assert flow in str(watcher.value)
