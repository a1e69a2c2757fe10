"""Data-aware scheduling on ingestions: a DAG that runs after each ingestion into a dataset.

``example_flow_service_ingest_assets`` ingests a window (trigger-form params, as in the manual
example) with ``emit_asset_events=True``: when the flow run succeeds, the operator emits an asset
event (a dataset event on Airflow 2.11) for the flow's target dataset, ``aep://<org>/<sandbox>/
datasets/<dataset id>``, carrying the run's facts in its extra. ``example_flow_service_on_ingestion``
is scheduled on that dataset and reads the counts from the event that triggered it.

Environment: ``FLOW_SERVICE_FLOW_ID`` (the dataflow), ``FLOW_SERVICE_ORG_ID``,
``FLOW_SERVICE_SANDBOX`` and ``FLOW_SERVICE_DATASET_ID`` (the dataset the flow writes to: its
target connection's ``params.dataSetId``). The defaults are the Flow Service emulator's.
"""

from __future__ import annotations

import os
from typing import Any

import pendulum

try:  # Airflow 3.x
    from airflow.sdk import DAG, Param, task
except ImportError:  # Airflow 2.x
    from airflow import DAG
    from airflow.decorators import task
    from airflow.models.param import Param  # type: ignore[no-redef]

from airflow_provider_flowservice.assets import dataset_asset
from airflow_provider_flowservice.operators.flow_service import FlowServiceCreateRunOperator
from airflow_provider_flowservice.version_compat import triggering_asset_events

#: The Flow Service emulator's table-based dataflow and the dataset it writes; replace with yours.
FLOW_ID = os.environ.get("FLOW_SERVICE_FLOW_ID", "d8a68c3a-8f3e-4b8d-9f00-5c1d0a6e7a11")
ORG_ID = os.environ.get("FLOW_SERVICE_ORG_ID", "EMULATORORG@AdobeOrg")
SANDBOX = os.environ.get("FLOW_SERVICE_SANDBOX", "prod")
DATASET_ID = os.environ.get("FLOW_SERVICE_DATASET_ID", "ce12340ebb9e5875ac8e2d49")
CUSTOMERS = dataset_asset(ORG_ID, SANDBOX, DATASET_ID)

with DAG(
    dag_id="example_flow_service_ingest_assets",
    description="Ingest a window and emit an asset event for the dataset it filled",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "window_start": Param("2025-01-01T00:00:00+00:00", type="string", title="Window start"),
        "window_end": Param("2025-01-02T00:00:00+00:00", type="string", title="Window end"),
    },
    tags=["example", "flow-service"],
):
    FlowServiceCreateRunOperator(
        task_id="ingest",
        flow_id=FLOW_ID,
        window_start="{{ params.window_start }}",
        window_end="{{ params.window_end }}",
        poll_interval=float(os.environ.get("FLOW_SERVICE_POLL_INTERVAL", "60")),
        emit_asset_events=True,  # emits through flow_alias(FLOW_ID), added to the task's outlets
    )

with DAG(
    dag_id="example_flow_service_on_ingestion",
    description="Runs after each ingestion into the dataset; reads the run's counts from the event",
    doc_md=__doc__,
    schedule=[CUSTOMERS],
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "flow-service"],
):

    @task
    def report_ingestion(**context: Any) -> list[dict[str, Any]]:
        """Log and return what each triggering ingestion wrote (3.x and 2.11 alike)."""
        facts = []
        for events in triggering_asset_events(context).values():
            for event in events:
                extra = dict(event.extra or {})
                print(
                    f"Flow run {extra.get('run_id')} ({extra.get('status')}) wrote "
                    f"{extra.get('records_written')} of {extra.get('records_read')} records "
                    f"(failed {extra.get('records_failed')}) for window "
                    f"{extra.get('window_start_iso')} - {extra.get('window_end_iso')}"
                )
                facts.append(extra)
        return facts

    report_ingestion()
