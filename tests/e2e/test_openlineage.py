"""OpenLineage events of a real DAG run (``airflow dags test`` with the file transport), field by field.

One ``airflow dags test`` subprocess runs a two-task DAG against the emulator: ``ingest`` reads an
S3 flow whose run succeeds (with asset events on, through the dataset's asset), ``ingest_fails``
reads a PostgreSQL flow whose run fails. The OpenLineage provider's listener calls the operator's
``get_openlineage_facets_on_complete`` / ``_on_failure`` and the file transport writes each event
as a JSON line, which the tests read. A subprocess, because the listener and its transport are set
up from the configuration once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator

pytest.importorskip("airflow.providers.openlineage")
# One `airflow dags test` subprocess for the module: ~1 min on a quiet machine.
pytestmark = pytest.mark.timeout(400)

DAG_ID = "flow_service_openlineage_test"
OK_FLOW = "0a1b2c3d-0000-4000-8000-00000000000a"
FAILING_FLOW = "0a1b2c3d-0000-4000-8000-00000000000b"
DATASET_ID = "0a1b2c3d4e5f60718293a4b5"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))

DAG_FILE = f'''
import pendulum

try:
    from airflow.sdk import DAG
except ImportError:
    from airflow import DAG

from airflow_provider_flowservice.assets import dataset_asset
from airflow_provider_flowservice.operators.flow_service import FlowServiceCreateRunOperator

# The dataset's own asset, not an alias: 2.11's `airflow dags test` does not store aliases.
OUTLETS = {{"ingest": [dataset_asset("EMULATORORG@AdobeOrg", "prod", "{DATASET_ID}")], "ingest_fails": []}}

with DAG(dag_id="{DAG_ID}", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")):
    tasks = (("ingest", "{OK_FLOW}", True), ("ingest_fails", "{FAILING_FLOW}", False))
    for task_id, flow_id, assets in tasks:
        FlowServiceCreateRunOperator(
            task_id=task_id,
            flow_id=flow_id,
            window_start="2025-01-01T00:00:00+00:00",
            window_end="2025-01-02T00:00:00+00:00",
            poll_interval=0.2,
            emit_asset_events=assets,
            outlets=OUTLETS[task_id],
            retries=0,
        )
'''


class Run:
    """What the one DAG run left: its process, the emitted events, the emulator's runs and reads."""

    def __init__(self, emulator: FlowServiceEmulator, proc: subprocess.CompletedProcess[str], events: Path):
        self.proc = proc
        lines = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
        self.events = lines
        (self.ok_run,) = emulator.runs_for_flow(OK_FLOW)
        (self.failed_run,) = emulator.runs_for_flow(FAILING_FLOW)
        self.lineage_gets = Counter(
            r.path for r in emulator.requests if r.method == "GET" and "/runs" not in r.path
        )

    def task_events(self, task_id: str, event_type: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e["job"]["name"] == f"{DAG_ID}.{task_id}" and e["eventType"] == event_type
        ]

    def output(self) -> str:
        return self.proc.stdout[-3000:] + self.proc.stderr[-3000:]


@pytest.fixture(scope="module")
def run(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    dags = tmp_path_factory.mktemp("ol-dags")
    (dags / "openlineage_dag.py").write_text(DAG_FILE)
    events = tmp_path_factory.mktemp("ol-events") / "events.jsonl"
    with FlowServiceEmulator(polls_to_finish=1) as emulator:
        emulator.add_flow(OK_FLOW, kind="file", source_kind="amazon-s3", dataset_id=DATASET_ID)
        emulator.add_flow(FAILING_FLOW, kind="table", source_kind="postgresql", outcome="failed")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__OPENLINEAGE")}
        env.update(
            {
                "AIRFLOW_HOME": str(airflow_db),
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW_CONN_FLOW_SERVICE_DEFAULT": emulator.connection_json(),
                "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
                    {"type": "file", "log_file_path": str(events), "append": True}
                ),
                "AIRFLOW__OPENLINEAGE__NAMESPACE": "flowservice-tests",
            }
        )
        proc = subprocess.run(
            [AIRFLOW, "dags", "test", DAG_ID],
            env=env,
            capture_output=True,
            text=True,
            timeout=360,
            check=False,
        )
        assert events.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
        return Run(emulator, proc, events)


def test_complete_event_names_s3_source_aep_dataset_counts_and_flow_run(run: Run) -> None:
    complete = run.task_events("ingest", "COMPLETE")
    assert len(complete) == 1, (run.events, run.output())
    event = complete[0]
    (source,) = event["inputs"]
    assert (source["namespace"], source["name"]) == ("s3://acme-ingest", "crm/exports/customers.csv")
    assert source["facets"]["flowServiceSource"]["sourceKind"] == "amazon-s3"
    (output,) = event["outputs"]
    assert (output["namespace"], output["name"]) == ("aep://emulatororg", f"prod/datasets/{DATASET_ID}")
    stats = output["outputFacets"]["outputStatistics"]
    assert (stats["rowCount"], stats["size"], stats["fileCount"]) == (100, 10000, 2)
    run_facet = event["run"]["facets"]["flowServiceRun"]
    assert run_facet["flowId"] == OK_FLOW and run_facet["runId"] == run.ok_run["id"]
    assert run_facet["status"] == "success"
    assert (run_facet["windowStart"], run_facet["windowEnd"]) == (1735689600, 1735776000)
    assert run_facet["windowStartIso"] == "2025-01-01T00:00:00+00:00"
    assert event["job"]["facets"]["flowServiceFlow"]["sourceKind"] == "amazon-s3"
    assert not run.task_events("ingest", "FAIL")


def test_failed_run_emits_fail_event_with_flow_run_and_fallback_source_namespace(run: Run) -> None:
    fail = run.task_events("ingest_fails", "FAIL")
    assert len(fail) == 1, (run.events, run.output())
    facet = fail[0]["run"]["facets"]["flowServiceRun"]
    assert (facet["flowId"], facet["runId"], facet["status"]) == (
        FAILING_FLOW,
        run.failed_run["id"],
        "failed",
    )
    (source,) = fail[0]["inputs"]
    assert source["namespace"].startswith("aep-source://") and source["name"] == "public.customers"
    (output,) = fail[0]["outputs"]
    assert "outputStatistics" not in output.get("outputFacets", {})
    assert not run.task_events("ingest_fails", "COMPLETE")


def test_each_lineage_resource_is_read_once_per_task_with_assets_and_openlineage_both_on(run: Run) -> None:
    # Per task: its flow, source connection, target connection and connection spec (the two
    # flows have different sources and specs), each read exactly once even though the `ingest`
    # task emits asset events as well as OpenLineage facets.
    kinds = Counter(path.rsplit("/", 2)[-2] for path in run.lineage_gets)
    assert kinds == {"flows": 2, "sourceConnections": 2, "targetConnections": 2, "connectionSpecs": 2}, (
        run.lineage_gets
    )
    assert set(run.lineage_gets.values()) == {1}, run.lineage_gets
