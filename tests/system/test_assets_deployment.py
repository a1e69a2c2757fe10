"""System test: a real scheduler runs the consumer DAG after each ingestion, from the asset event.

The asset example pair (example_dags/example_flow_service_assets.py) on a real deployment
(``_airflow_services.py``: Airflow 3.x api-server, dag-processor, scheduler, triggerer; 2.11
scheduler and triggerer) against the emulator in this process. The producer is triggered once
from the CLI; the ingestion emits an event for the flow's dataset through the producer's asset
alias, and the scheduler creates a consumer run for it (asset-triggered). The consumer's task log
shows the counts and window it read from its triggering event. (One ingestion, not several: each
task start costs ~30 s on a loaded 2-core machine with 2.11's SequentialExecutor.) New DAGs start
unpaused (``[core] dags_are_paused_at_creation=False``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_flowservice.testing.emulator import DEFAULT_FLOW_ID, FlowServiceEmulator
from tests.system._airflow_services import AIRFLOW_CLI, AirflowDeployment, running_deployment, wait_for

pytestmark = [
    pytest.mark.system,
    pytest.mark.timeout(480),
    pytest.mark.skipif(not Path(AIRFLOW_CLI).exists(), reason=f"no `airflow` command at {AIRFLOW_CLI}"),
]

EXAMPLE = Path(__file__).resolve().parents[2] / "example_dags" / "example_flow_service_assets.py"
PRODUCER = "example_flow_service_ingest_assets"
CONSUMER = "example_flow_service_on_ingestion"
WINDOWS = [("2025-01-02T00:00:00+00:00", "2025-01-03T00:00:00+00:00")]
TIMEOUT = 360.0


def _runs(deployment: AirflowDeployment, dag_id: str) -> list[tuple[Any, ...]]:
    return deployment.query("SELECT run_id, state, run_type FROM dag_run WHERE dag_id = ?", (dag_id,))


def _ended(deployment: AirflowDeployment, dag_id: str, count: int) -> list[tuple[Any, ...]] | None:
    deployment.check_alive()
    runs = _runs(deployment, dag_id)
    return runs if len(runs) >= count and all(r[1] in ("success", "failed") for r in runs) else None


def test_consumer_runs_after_an_ingestion_and_reads_its_counts_from_the_event(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(EXAMPLE, dags / EXAMPLE.name)
    home = tmp_path / "airflow-home"
    home.mkdir()
    with FlowServiceEmulator(polls_to_finish=1) as emulator:
        emulator.add_flow(DEFAULT_FLOW_ID, kind="table")
        env = {
            "AIRFLOW_CONN_FLOW_SERVICE_DEFAULT": emulator.connection_json(),
            "FLOW_SERVICE_FLOW_ID": DEFAULT_FLOW_ID,
            "FLOW_SERVICE_DATASET_ID": emulator.target_dataset_id(DEFAULT_FLOW_ID),
            "FLOW_SERVICE_POLL_INTERVAL": "1",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        }
        with running_deployment(home, dags, env) as deployment:
            wait_for(
                "both DAGs parsed",
                lambda: len(deployment.query(
                    "SELECT dag_id FROM dag WHERE dag_id IN (?, ?)", (PRODUCER, CONSUMER)
                )) == 2,
                120,
            )
            for number, (start, end) in enumerate(WINDOWS, 1):
                conf = f'{{"window_start": "{start}", "window_end": "{end}"}}'
                deployment.cli("dags", "trigger", PRODUCER, "-c", conf)
                wait_for(f"ingestion {number}", lambda n=number: _ended(deployment, PRODUCER, n), TIMEOUT)
                wait_for(f"consumer run {number}", lambda n=number: _ended(deployment, CONSUMER, n), TIMEOUT)
            producer_runs, consumer_runs = _runs(deployment, PRODUCER), _runs(deployment, CONSUMER)
            logs = "\n".join(t for p, t in deployment.task_logs().items() if f"dag_id={CONSUMER}" in str(p))

    assert [r[1] for r in producer_runs] == ["success"], producer_runs
    assert [r[1] for r in consumer_runs] == ["success"], consumer_runs
    assert {str(r[2]) for r in consumer_runs} <= {"asset_triggered", "dataset_triggered"}, consumer_runs
    for flow_run, (start, end) in zip(emulator.runs_for_flow(DEFAULT_FLOW_ID), WINDOWS, strict=True):
        line = f"Flow run {flow_run['id']} (success) wrote 100 of 100 records (failed 0) for window "
        line += f"{start} - {end}"
        assert line in logs, logs[-3000:]
