"""Backfill a Flow Service dataflow one data interval at a time (one flow run per DAG run).

Each DAG run creates one on-demand flow run whose window is the run's data interval, and waits
for it in the triggerer (deferrable), so a long backfill holds no worker slots.

``catchup=False``: unpausing adds one scheduled run, for the latest whole day (D-1 on day D). The
UI's Backfill dialog unpauses by default, so a dialog backfill ends at D-2 (D-4..D-2: 4 flow runs,
those days and D-1's scheduled one), or "Unpause on trigger" is unticked and the DAG unpaused after
the backfill is made. With D-1 in a backfill that unpauses, Airflow 3.3.2's scheduler races the
backfill for that day (seen: it exited on the duplicate). See docs/ui.md and docs/backfills.md.

Configuration, read cheaply when the file is parsed (no database or network):

- ``FLOW_SERVICE_FLOW_ID`` (environment): default dataflow id. At run time an Airflow Variable
  ``flow_service_flow_id`` wins over it.
- ``FLOW_SERVICE_DELTA_COLUMN`` (environment): the table's timestamp column (default ``updated_at``).
- ``FLOW_SERVICE_POLL_INTERVAL`` (environment): seconds between status polls (default 60).
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum

try:  # Airflow 3.x
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.x
    from airflow import DAG
try:  # the public Task SDK name, where Airflow has it (3.x)
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # Airflow 2.x
    from airflow.timetables.interval import CronDataIntervalTimetable  # type: ignore[no-redef]

from airflow_provider_flowservice.operators.flow_service import FlowServiceCreateRunOperator

#: The Flow Service emulator's table-based dataflow; replace with yours (or set the variable).
EMULATOR_FLOW_ID = "d8a68c3a-8f3e-4b8d-9f00-5c1d0a6e7a11"
DEFAULT_FLOW_ID = os.environ.get("FLOW_SERVICE_FLOW_ID", EMULATOR_FLOW_ID)
DELTA_COLUMN = os.environ.get("FLOW_SERVICE_DELTA_COLUMN", "updated_at")
POLL_INTERVAL = float(os.environ.get("FLOW_SERVICE_POLL_INTERVAL", "60"))

DOC_MD = f"""
### Flow Service: per-interval backfill

One on-demand flow run per **daily** data interval (00:00 UTC to 00:00 UTC): the run's window is
the DAG run's `data_interval_start` -> `data_interval_end`, sent as unix seconds. The table
column `{DELTA_COLUMN}` is sent as `deltaColumn` (table-based sources only; it sticks after the
first run of a flow).

**Dataflow:** Airflow Variable `flow_service_flow_id`, else env `FLOW_SERVICE_FLOW_ID`, else the
emulator's flow `{EMULATOR_FLOW_ID}`. **Connection:** `flow_service_default`.

**Backfill** a range (one flow run per day; `max_active_runs` bounds the concurrency):

- Airflow 3.x: `airflow backfill create --dag-id example_flow_service_backfill
  --from-date 2025-01-01 --to-date 2025-01-07`
- Airflow 2.x: `airflow dags backfill example_flow_service_backfill -s 2025-01-01 -e 2025-01-07`

From the UI: **Trigger > Backfill**, pick the days. The dialog ticks "Unpause on trigger" (the
scheduler runs no backfill of a paused DAG), and the DAG has `catchup=False`, so unpausing adds
one scheduled run, for the latest whole day (on day D: D-1), never a catch-up of every day since
`start_date`. So either **end the backfill at D-2** (D-4..D-2 gives 4 flow runs: those 3 days and
D-1's scheduled run), or **untick "Unpause on trigger"** and unpause after the backfill is made
(the backfill's runs exist by then, so the scheduler skips D-1 if the backfill has it: exactly
the days picked). Not D-1 with unpause ticked: on Airflow 3.3.2 the scheduler and the backfill
race for that day, and the scheduler was seen to exit on the duplicate. On SQLite (`airflow
standalone`) Airflow 3.3.2's dialog often answers 503 "Database is locked": then use `airflow
backfill create`.

**One interval** without the scheduler: `airflow dags test example_flow_service_backfill
2025-01-02T00:00:00+00:00` (ingests the day that ends at that date).

Against the local emulator: `make demo`.
"""

with DAG(
    dag_id="example_flow_service_backfill",
    description="One Flow Service on-demand run per daily data interval",
    doc_md=DOC_MD,
    # A data-interval timetable: each run covers [previous midnight, midnight), on Airflow 2 and 3
    # alike. (On Airflow 3 a plain cron string gives zero-length intervals: no window to ingest.)
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    # No catch-up when unpaused (the UI's Backfill dialog unpauses by default): past days are
    # ingested by a backfill, on purpose, not by every day since start_date at once.
    catchup=False,
    max_active_runs=3,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["example", "flow-service"],
) as dag:
    FlowServiceCreateRunOperator(
        task_id="ingest_interval",
        # Read at run time (not at parse time): the Variable if set, else the default above.
        flow_id="{{ var.value.get('flow_service_flow_id', '" + DEFAULT_FLOW_ID + "') }}",
        # window_start / window_end left unset: the data interval is the window.
        delta_column=DELTA_COLUMN,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=timedelta(hours=6),
    )
