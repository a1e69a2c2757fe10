"""Ingest one window chosen by a person: create a flow run, then wait for it with a sensor.

The window comes from trigger-form params (or ``--conf``), not from a schedule. The operator
returns as soon as the run exists (``wait_for_completion=False``); the sensor waits in
``reschedule`` mode, so no worker slot is held between polls.

``FLOW_SERVICE_FLOW_ID`` (environment) sets the default dataflow shown in the form, and
``FLOW_SERVICE_POLL_INTERVAL`` the seconds between status polls (default 60).
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum

try:  # Airflow 3.x
    from airflow.sdk import DAG, Param
except ImportError:  # Airflow 2.x
    from airflow import DAG
    from airflow.models.param import Param  # type: ignore[no-redef]

from airflow_provider_flowservice.operators.flow_service import FlowServiceCreateRunOperator
from airflow_provider_flowservice.sensors.flow_service import FlowServiceRunSensor

#: The Flow Service emulator's table-based dataflow; replace with yours.
EMULATOR_FLOW_ID = "d8a68c3a-8f3e-4b8d-9f00-5c1d0a6e7a11"
DEFAULT_FLOW_ID = os.environ.get("FLOW_SERVICE_FLOW_ID", EMULATOR_FLOW_ID)
POLL_INTERVAL = float(os.environ.get("FLOW_SERVICE_POLL_INTERVAL", "60"))
#: An ISO-8601 date and time with a UTC offset (or Z), as the window needs.
ISO_WITH_OFFSET = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$"

DOC_MD = """
### Flow Service: ingest a window on demand

Trigger with the form (**Trigger DAG w/ config**), or from the command line:

```
airflow dags trigger example_flow_service_manual \\
  -c '{"window_start": "2025-01-01T00:00:00+00:00", "window_end": "2025-01-02T00:00:00+00:00"}'
```

Add `"flow_id": "<dataflow id>"` to ingest another dataflow. Window values are ISO-8601 date-times
**with** a UTC offset (the form's date-time pickers; `--conf` values are checked as the same JSON-schema
`date-time` format); the window is start-inclusive, end-exclusive.

`create_run` starts the flow run and pushes its id to XCom; `wait_for_run` (a
`FlowServiceRunSensor` in reschedule mode) waits for it and fails at once, with the run's
errors, if the run fails. Connection: `flow_service_default`.
"""

with DAG(
    dag_id="example_flow_service_manual",
    description="Create a Flow Service run for a window given at trigger time, then wait for it",
    doc_md=DOC_MD,
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "flow_id": Param(
            DEFAULT_FLOW_ID,
            type="string",
            title="Dataflow id",
            description="The dataflow (flowId, a UUID) to run: Sources > Dataflows in Experience Platform.",
        ),
        "window_start": Param(
            "2025-01-01T00:00:00+00:00",
            type="string",
            # "date-time": the trigger form shows a date-time picker, so a malformed value cannot be
            # entered; the pattern (which Airflow checks, unlike the format) refuses one in --conf.
            format="date-time",
            pattern=ISO_WITH_OFFSET,
            title="Window start",
            description="Start of the source data window (inclusive), UTC.",
        ),
        "window_end": Param(
            "2025-01-02T00:00:00+00:00",
            type="string",
            format="date-time",
            pattern=ISO_WITH_OFFSET,
            title="Window end",
            description="End of the source data window (exclusive), UTC. Must be after the start.",
        ),
    },
    tags=["example", "flow-service"],
) as dag:
    create_run = FlowServiceCreateRunOperator(
        task_id="create_run",
        flow_id="{{ params.flow_id }}",
        window_start="{{ params.window_start }}",
        window_end="{{ params.window_end }}",
        wait_for_completion=False,
    )
    wait_for_run = FlowServiceRunSensor(
        task_id="wait_for_run",
        run_id="{{ ti.xcom_pull(task_ids='create_run') }}",
        mode="reschedule",
        poll_interval=POLL_INTERVAL,
        timeout=timedelta(hours=6),
    )
    create_run >> wait_for_run
