"""The example DAGs parse on both Airflow lines and ingest the right windows against the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from airflow import __version__ as AIRFLOW_VERSION

from airflow_provider_flowservice.testing.emulator import DEFAULT_FLOW_ID, FlowServiceEmulator
from tests.e2e.harness import EXAMPLE_DAGS, load_example_dags, run_dag, unix

EXPECTED_DAGS = {"example_flow_service_backfill", "example_flow_service_manual"}
REPO = EXAMPLE_DAGS.parent
#: An Airflow 2.11 interpreter: this one when it runs Airflow 2 (CI's 2.11 pass), else a second
#: virtualenv (``make install VENV=.venv-211 AIRFLOW_VERSION=2.11.2``), else one at /tmp/v2.
V2_CANDIDATES = (REPO / ".venv-211/bin/python", REPO / ".venv211/bin/python", Path("/tmp/v2/bin/python"))
V2_PYTHON = (
    Path(sys.executable)
    if AIRFLOW_VERSION.startswith("2.")
    else next((p for p in V2_CANDIDATES if p.exists()), V2_CANDIDATES[0])
)

_PARSE_SCRIPT = """
import inspect, json, sys
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:
    from airflow.models.dagbag import DagBag
kwargs = {"dag_folder": sys.argv[1]}
if "include_examples" in inspect.signature(DagBag.__init__).parameters:
    kwargs["include_examples"] = False
bag = DagBag(**kwargs)
import airflow
print(json.dumps({"version": airflow.__version__, "dags": sorted(bag.dag_ids),
                  "errors": {k: str(v) for k, v in bag.import_errors.items()}}))
"""


def _created_runs(emulator: FlowServiceEmulator) -> list[dict[str, Any]]:
    return [r.body for r in emulator.requests if r.method == "POST" and r.path.endswith("/runs")]


def test_example_dags_parse_without_errors() -> None:
    bag = load_example_dags()
    assert bag.import_errors == {}
    assert set(bag.dag_ids) >= EXPECTED_DAGS
    for dag_id in EXPECTED_DAGS:
        assert bag.dags[dag_id].doc_md, f"{dag_id} has no doc_md"


@pytest.mark.skipif(
    not V2_PYTHON.exists(),
    reason="no Airflow 2.11 virtualenv: make install VENV=.venv-211 AIRFLOW_VERSION=2.11.2",
)
def test_example_dags_parse_on_airflow_2() -> None:
    with tempfile.TemporaryDirectory(prefix="flowservice-v2-parse-") as home:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "PYTHONPATH": str(REPO),
            "PYTHONWARNINGS": "ignore",
        }
        proc = subprocess.run(
            [str(V2_PYTHON), "-c", _PARSE_SCRIPT, str(EXAMPLE_DAGS)],
            capture_output=True, text=True, timeout=120, env=env, cwd=home, check=False,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["version"].startswith("2."), result
    assert result["errors"] == {}
    assert set(result["dags"]) >= EXPECTED_DAGS


def test_backfill_dag_ingests_its_data_interval(
    e2e_emulator: FlowServiceEmulator, example_dagbag: Any
) -> None:
    dag = example_dagbag.dags["example_flow_service_backfill"]
    dag.get_task("ingest_interval").poll_interval = 0.1
    e2e_emulator.reset_requests()

    result = run_dag(dag, logical_date=datetime(2025, 1, 2, tzinfo=UTC))

    assert result.states == {"ingest_interval": "success"}, result.errors
    created = _created_runs(e2e_emulator)
    assert len(created) == 1, created
    body = created[0]
    dag_run = result.dag_run
    start, end = unix(dag_run.data_interval_start), unix(dag_run.data_interval_end)
    assert end - start == 24 * 3600  # one daily interval
    assert body["flowId"] == DEFAULT_FLOW_ID
    assert int(body["params"]["windowStartTime"]) == start
    assert int(body["params"]["windowEndTime"]) == end
    assert body["params"]["deltaColumn"] == {"name": "updated_at"}
    run_id = result.xcom("ingest_interval")
    assert e2e_emulator.runs[run_id]["metrics"]["statusSummary"]["status"] == "success"


def test_manual_dag_ingests_the_window_given_at_trigger_time(
    e2e_emulator: FlowServiceEmulator, example_dagbag: Any
) -> None:
    dag = example_dagbag.dags["example_flow_service_manual"]
    dag.get_task("wait_for_run").poke_interval = 0.1
    e2e_emulator.reset_requests()
    conf = {"window_start": "2025-03-01T00:00:00+01:00", "window_end": "2025-03-01T06:30:00+01:00"}

    result = run_dag(dag, conf=conf)

    assert result.states == {"create_run": "success", "wait_for_run": "success"}, result.errors
    created = _created_runs(e2e_emulator)
    assert len(created) == 1, created
    params = created[0]["params"]
    assert int(params["windowStartTime"]) == unix(datetime.fromisoformat(conf["window_start"]))
    assert int(params["windowEndTime"]) == unix(datetime.fromisoformat(conf["window_end"]))
    assert int(params["windowStartTime"]) == 1740783600  # 2025-02-28T23:00:00Z
    run_id = result.xcom("create_run")
    summary = result.xcom("wait_for_run")
    assert summary["run_id"] == run_id
    assert summary["status"] == "success"
    assert summary["records"]["outputRecordCount"] == 100
    assert result.xcom("wait_for_run", key="run_url")
    polls = [r for r in e2e_emulator.requests if r.method == "GET" and r.path.endswith(f"/runs/{run_id}")]
    assert len(polls) >= 2  # the sensor saw the run running, then finished


def test_manual_dag_runs_with_its_default_params(
    e2e_emulator: FlowServiceEmulator, example_dagbag: Any
) -> None:
    dag = example_dagbag.dags["example_flow_service_manual"]
    dag.get_task("wait_for_run").poke_interval = 0.1
    e2e_emulator.reset_requests()

    result = run_dag(dag)

    assert result.states == {"create_run": "success", "wait_for_run": "success"}, result.errors
    params = _created_runs(e2e_emulator)[0]["params"]
    assert (int(params["windowStartTime"]), int(params["windowEndTime"])) == (1735689600, 1735776000)

