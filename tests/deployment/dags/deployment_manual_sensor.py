"""Deployment test DAG: create a run for the window given at trigger time; a reschedule-mode sensor waits."""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_provider_flowservice.operators.flow_service import FlowServiceCreateRunOperator
from airflow_provider_flowservice.sensors.flow_service import FlowServiceRunSensor

with DAG(
    dag_id="deployment_manual_sensor",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 6, "retry_delay": timedelta(seconds=15)},
) as dag:
    create_run = FlowServiceCreateRunOperator(
        task_id="create_run",
        flow_id=os.environ["DEPLOYMENT_MANUAL_FLOW_ID"],
        window_start="{{ dag_run.conf['window_start'] }}",
        window_end="{{ dag_run.conf['window_end'] }}",
        wait_for_completion=False,
    )
    (
        FlowServiceRunSensor(
            task_id="wait_for_run",
            run_id="{{ ti.xcom_pull(task_ids='create_run') }}",
            mode="reschedule",
            poke_interval=float(os.environ.get("FLOW_SERVICE_POLL_INTERVAL", "2")),
            timeout=timedelta(minutes=20),
        )
        << create_run
    )
