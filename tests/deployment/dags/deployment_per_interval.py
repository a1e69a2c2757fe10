"""Deployment test DAG: one deferrable flow run per hourly data interval, filled by `airflow backfill create`.

``end_date`` lies in the past and ``catchup`` is off, so the scheduler itself never creates a run:
every DAG run comes from the backfill (the DAG must be unpaused for backfill runs to be scheduled).
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable

from airflow_provider_flowservice.operators.flow_service import FlowServiceCreateRunOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")

with DAG(
    dag_id="deployment_per_interval",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=START,
    end_date=START.add(days=3),
    catchup=False,
    max_active_runs=int(os.environ.get("DEPLOYMENT_MAX_ACTIVE_RUNS", "8")),
    default_args={"retries": 6, "retry_delay": timedelta(seconds=15)},
) as dag:
    FlowServiceCreateRunOperator(
        task_id="ingest_interval",
        flow_id=os.environ["DEPLOYMENT_INTERVAL_FLOW_ID"],
        deferrable=True,
        poll_interval=float(os.environ.get("FLOW_SERVICE_POLL_INTERVAL", "2")),
        timeout=timedelta(minutes=20),
    )
