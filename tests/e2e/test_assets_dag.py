"""The asset example pair with ``dag.test()`` on both Airflow lines: the event and the queued consumer.

``dag.test()`` runs the producer for real (operator, emulator, Airflow's own outlet-event
recording); it does not run a scheduler, so the consumer's run is checked as far as Airflow takes
it without one: queued for the dataset (``AssetDagRunQueue``; 2.11 ``DatasetDagRunQueue``). The
consumer actually running, and reading the counts, is tests/system/test_assets_deployment.py.
Also here: the sensor's asset event, and no lineage read at all when neither asset events nor
OpenLineage are on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_flowservice._auth import TOKEN_CACHE
from airflow_provider_flowservice.assets import dataset_uri
from airflow_provider_flowservice.testing.emulator import DEFAULT_FLOW_ID, FlowServiceEmulator
from airflow_provider_flowservice.version_compat import AIRFLOW_V_3_0_PLUS
from tests.e2e.harness import _serialize_for_test, load_example_dags, run_dag

PRODUCER = "example_flow_service_ingest_assets"
CONSUMER = "example_flow_service_on_ingestion"
WINDOW = (1735689600, 1735776000)  # the producer's default params: 2025-01-01 .. 2025-01-02 UTC


def _register(dag: Any) -> None:
    """Store the consumer DAG, with its schedule on the dataset, as the DAG processor would; unpause it."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    if AIRFLOW_V_3_0_PLUS:
        _serialize_for_test(dag)
    else:
        from airflow.models.dag import DAG

        DAG.bulk_write_to_db([dag])
    with create_session() as session:
        session.query(DagModel).filter(DagModel.dag_id == dag.dag_id).update({"is_paused": False})


def _events_and_queue(uri: str) -> tuple[list[dict[str, Any]], list[str]]:
    from airflow.utils.session import create_session

    if AIRFLOW_V_3_0_PLUS:
        from airflow.models.asset import AssetDagRunQueue as Queue
        from airflow.models.asset import AssetEvent as Event
        from airflow.models.asset import AssetModel as Model

        id_column, queue_column = Event.asset_id, Queue.asset_id
    else:
        from airflow.models.dataset import DatasetDagRunQueue as Queue  # type: ignore[no-redef]
        from airflow.models.dataset import DatasetEvent as Event  # type: ignore[no-redef]
        from airflow.models.dataset import DatasetModel as Model  # type: ignore[no-redef]

        id_column, queue_column = Event.dataset_id, Queue.dataset_id
    with create_session() as session:
        model = session.query(Model).filter(Model.uri == uri).one()
        extras = [dict(e.extra) for e in session.query(Event).filter(id_column == model.id)]
        queued = [q.target_dag_id for q in session.query(Queue).filter(queue_column == model.id)]
    return extras, queued


@pytest.fixture
def emulator(airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    TOKEN_CACHE.clear()
    with FlowServiceEmulator(polls_to_finish=1) as em:
        em.add_flow(DEFAULT_FLOW_ID, kind="table")
        monkeypatch.setenv("AIRFLOW_CONN_FLOW_SERVICE_DEFAULT", em.connection_json())
        monkeypatch.setenv("FLOW_SERVICE_POLL_INTERVAL", "0.2")
        yield em
    TOKEN_CACHE.clear()


def test_ingestion_emits_dataset_event_with_run_facts_and_queues_consumer(
    emulator: FlowServiceEmulator,
) -> None:
    bag = load_example_dags()
    _register(bag.dags[CONSUMER])
    if not AIRFLOW_V_3_0_PLUS:  # the DAG processor stores the producer's alias; 2.11's dag.test() does not
        from airflow.models.dag import DAG

        DAG.bulk_write_to_db([bag.dags[PRODUCER]])
    result = run_dag(bag.dags[PRODUCER])
    assert result.states == {"ingest": "success"}, result.errors

    run_id = result.xcom("ingest")
    uri = dataset_uri("EMULATORORG@AdobeOrg", "prod", emulator.target_dataset_id(DEFAULT_FLOW_ID))
    extras, queued = _events_and_queue(uri)
    assert extras[-1] == {
        "flow_id": DEFAULT_FLOW_ID,
        "run_id": run_id,
        "status": "success",
        "dataset_id": emulator.target_dataset_id(DEFAULT_FLOW_ID),
        "window_start": WINDOW[0],
        "window_end": WINDOW[1],
        "window_start_iso": "2025-01-01T00:00:00+00:00",
        "window_end_iso": "2025-01-02T00:00:00+00:00",
        "records_read": 100,
        "records_written": 100,
        "records_failed": 0,
    }
    assert CONSUMER in queued
    # Lineage cost: the flow and its target connection, once each (no source reads for assets).
    lineage_gets = [
        r.path.rsplit("/", 2)[-2] for r in emulator.requests if r.method == "GET" and "/runs" not in r.path
    ]
    assert sorted(lineage_gets) == ["flows", "targetConnections"]


def _dag_of(dag_id: str, make_task: Any) -> Any:
    """A one-task DAG built in the test (``make_task()`` inside the DAG context), stored like a parsed one."""
    from datetime import UTC, datetime

    try:
        from airflow.sdk import DAG
    except ImportError:  # Airflow 2.x
        from airflow import DAG  # type: ignore[no-redef]

    with DAG(dag_id=dag_id, schedule=None, start_date=datetime(2025, 1, 1, tzinfo=UTC)) as dag:
        make_task()
    if not AIRFLOW_V_3_0_PLUS:  # 2.11's dag.test() records dataset events only for stored datasets
        from airflow.models.dag import DAG as StoredDag

        StoredDag.bulk_write_to_db([dag])
    return dag


def test_no_asset_events_and_no_openlineage_cost_no_lineage_reads(
    emulator: FlowServiceEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_flowservice.operators.flow_service import FlowServiceCreateRunOperator

    for name in [k for k in os.environ if k.startswith("AIRFLOW__OPENLINEAGE")]:
        monkeypatch.delenv(name)
    dag = _dag_of(
        "e2e_ingest_without_lineage",
        lambda: FlowServiceCreateRunOperator(
            task_id="ingest",
            flow_id=DEFAULT_FLOW_ID,
            window_start="2025-01-01T00:00:00+00:00",
            window_end="2025-01-02T00:00:00+00:00",
            poll_interval=0.2,
        ),
    )
    result = run_dag(dag)
    assert result.states == {"ingest": "success"}, result.errors
    flow_service = [f"{r.method} {r.path}" for r in emulator.requests if "/flowservice/" in r.path]
    assert flow_service and all("/runs" in line for line in flow_service), flow_service


def test_sensor_emits_dataset_event_with_the_run_facts(emulator: FlowServiceEmulator) -> None:
    from airflow_provider_flowservice.assets import dataset_asset
    from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook
    from airflow_provider_flowservice.sensors.flow_service import FlowServiceRunSensor

    dataset_id = emulator.target_dataset_id(DEFAULT_FLOW_ID)
    run_id = FlowServiceHook().create_run(DEFAULT_FLOW_ID, *WINDOW).run_id
    emulator.reset_requests()
    dag = _dag_of(
        "e2e_sensor_assets",
        lambda: FlowServiceRunSensor(
            task_id="wait",
            run_id=run_id,
            poll_interval=0.1,
            timeout=60,
            emit_asset_events=True,
            outlets=[dataset_asset("EMULATORORG@AdobeOrg", "prod", dataset_id)],
        ),
    )
    result = run_dag(dag)
    assert result.states == {"wait": "success"}, result.errors

    extras, _ = _events_and_queue(dataset_uri("EMULATORORG@AdobeOrg", "prod", dataset_id))
    assert extras[-1]["run_id"] == run_id and extras[-1]["flow_id"] == DEFAULT_FLOW_ID
    assert (extras[-1]["window_start"], extras[-1]["window_end"]) == WINDOW
    assert (extras[-1]["status"], extras[-1]["records_read"], extras[-1]["records_written"]) == (
        "success",
        100,
        100,
    )
    lineage_gets = [
        r.path.rsplit("/", 2)[-2] for r in emulator.requests if r.method == "GET" and "/runs" not in r.path
    ]
    assert sorted(lineage_gets) == ["flows", "targetConnections"]
