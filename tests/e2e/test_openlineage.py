"""OpenLineage events of a real task run (``airflow dags test`` with the file transport), field by field.

The producer example runs in a subprocess with ``[openlineage] transport`` set to the file
transport; the OpenLineage provider's listener calls the operator's
``get_openlineage_facets_on_complete`` / ``_on_failure`` and writes each event as a JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_flowservice.testing.emulator import DEFAULT_FLOW_ID, FlowServiceEmulator
from tests.e2e.harness import EXAMPLE_DAGS

pytest.importorskip("airflow.providers.openlineage")
# Each test starts `airflow dags test` in a subprocess: ~1 min idle, several on a loaded machine.
pytestmark = pytest.mark.timeout(900)

DAG_ID = "example_flow_service_ingest_assets"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def _run_dag(emulator: FlowServiceEmulator, home: Path, events: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__OPENLINEAGE")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLE_DAGS),
            "AIRFLOW_CONN_FLOW_SERVICE_DEFAULT": emulator.connection_json(),
            "FLOW_SERVICE_FLOW_ID": DEFAULT_FLOW_ID,
            "FLOW_SERVICE_DATASET_ID": emulator.target_dataset_id(DEFAULT_FLOW_ID),
            "FLOW_SERVICE_POLL_INTERVAL": "0.2",
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
                {"type": "file", "log_file_path": str(events), "append": True}
            ),
            "AIRFLOW__OPENLINEAGE__NAMESPACE": "flowservice-tests",
        }
    )
    return subprocess.run(
        [AIRFLOW, "dags", "test", DAG_ID], env=env, capture_output=True, text=True, timeout=400, check=False
    )


def _task_events(events: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    return [e for e in lines if e["job"]["name"] == f"{DAG_ID}.ingest"]


@pytest.fixture
def home(airflow_db: Path) -> Path:
    return airflow_db


def test_complete_event_names_s3_source_aep_dataset_counts_and_flow_run(home: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    with FlowServiceEmulator(polls_to_finish=1) as emulator:
        emulator.add_flow(DEFAULT_FLOW_ID, kind="file", source_kind="amazon-s3")
        proc = _run_dag(emulator, home, events)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        dataset_id = emulator.target_dataset_id(DEFAULT_FLOW_ID)
        (flow_run,) = emulator.runs_for_flow(DEFAULT_FLOW_ID)
        lineage_gets = sorted(
            r.path.rsplit("/", 2)[-2]
            for r in emulator.requests
            if r.method == "GET" and "/runs" not in r.path
        )

    complete = [e for e in _task_events(events) if e["eventType"] == "COMPLETE"]
    assert len(complete) == 1, [e["eventType"] for e in _task_events(events)]
    event = complete[0]
    (source,) = event["inputs"]
    assert (source["namespace"], source["name"]) == ("s3://acme-ingest", "crm/exports/customers.csv")
    assert source["facets"]["flowServiceSource"]["sourceKind"] == "amazon-s3"
    (output,) = event["outputs"]
    assert (output["namespace"], output["name"]) == ("aep://emulatororg", f"prod/datasets/{dataset_id}")
    stats = output["outputFacets"]["outputStatistics"]
    assert (stats["rowCount"], stats["size"], stats["fileCount"]) == (100, 10000, 2)
    run_facet = event["run"]["facets"]["flowServiceRun"]
    assert run_facet["flowId"] == DEFAULT_FLOW_ID and run_facet["runId"] == flow_run["id"]
    assert run_facet["status"] == "success"
    assert (run_facet["windowStart"], run_facet["windowEnd"]) == (1735689600, 1735776000)
    assert run_facet["windowStartIso"] == "2025-01-01T00:00:00+00:00"
    assert event["job"]["facets"]["flowServiceFlow"]["sourceKind"] == "amazon-s3"
    # Assets and OpenLineage together: each lineage resource read once for the task.
    assert lineage_gets == ["connectionSpecs", "flows", "sourceConnections", "targetConnections"]


def test_failed_run_emits_fail_event_with_flow_run_and_the_task_fails_for_the_run_only(
    home: Path, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    with FlowServiceEmulator(polls_to_finish=1) as emulator:
        emulator.add_flow(DEFAULT_FLOW_ID, kind="table", source_kind="postgresql", outcome="failed")
        proc = _run_dag(emulator, home, events)
        (flow_run,) = emulator.runs_for_flow(DEFAULT_FLOW_ID)

    assert proc.returncode != 0 or "failed" in proc.stdout + proc.stderr
    fail = [e for e in _task_events(events) if e["eventType"] == "FAIL"]
    assert len(fail) == 1, [e["eventType"] for e in _task_events(events)]
    facet = fail[0]["run"]["facets"]["flowServiceRun"]
    assert (facet["runId"], facet["status"]) == (flow_run["id"], "failed")
    (source,) = fail[0]["inputs"]
    assert source["namespace"].startswith("aep-source://") and source["name"] == "public.customers"
    (output,) = fail[0]["outputs"]
    assert "outputStatistics" not in output.get("outputFacets", {})
