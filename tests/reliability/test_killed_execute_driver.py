"""A killed ``execute()`` driver after the run was created: the retry adopts that run instead of
creating another. (The driver is a bare subprocess running the operator, not an Airflow worker;
killing real Airflow processes is the deployment test's.)

The first try runs in a real subprocess (a DAG file in a temporary dags folder, its task executed
by a small driver), which is SIGKILLed as soon as the emulator has the ``POST /runs``, before the
worker could read the answer. The retry, a try that looks like an automatic retry, must find the
run by its window and wait on it. A deliberate clear afterwards (the first try of a new sequence)
re-ingests: it creates a new run. (Killing a worker while it polls is the milder case: the
operator tests cover a retry reattaching to a run that is still going.)
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator
from tests.reliability._support import (
    after_clear,
    automatic_retry,
    context_for,
    execute,
    polls,
    posts,
    status_of,
    wait_until,
)

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL"),
]

DAG_FILE = """
import pendulum
from airflow.timetables.interval import CronDataIntervalTimetable

try:
    from airflow.sdk import DAG
except ImportError:
    from airflow import DAG

from airflow_provider_flowservice.operators.flow_service import FlowServiceCreateRunOperator
from airflow_provider_flowservice._retry import RetryPolicy

with DAG(
    "crash_test",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2023, 1, 1, tz="UTC"),
    catchup=False,
) as dag:
    FlowServiceCreateRunOperator(
        task_id="ingest",
        flow_id="{flow_id}",
        retries=1,
        poll_interval=0.05,
        timeout=60,
        retry=RetryPolicy(max_attempts=6, initial_backoff=0.01, max_backoff=0.05, max_total_seconds=10),
    )
"""

DRIVER = """
import importlib.util
import sys

import pendulum

spec = importlib.util.spec_from_file_location("crash_test_dag", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
task = module.dag.get_task("ingest")


class TI:  # try 1 of a task with retries=1
    try_number = 1
    max_tries = 1
    start_date = pendulum.now("UTC")

    def xcom_push(self, key, value):
        print("xcom", key, value, flush=True)


context = {
    "ti": TI(),
    "data_interval_start": pendulum.datetime(2024, 1, 1, tz="UTC"),
    "data_interval_end": pendulum.datetime(2024, 1, 2, tz="UTC"),
}
print("executing", flush=True)
task.execute(context)
print("finished", flush=True)
"""


def load_task(dag_file: Path) -> Any:
    """The same DAG file, imported in this process (the retry's worker)."""
    spec = importlib.util.spec_from_file_location(f"crash_test_dag_{uuid.uuid4().hex}", dag_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag.get_task("ingest")


def test_retry_after_a_killed_execute_driver_adopts_the_run_and_a_clear_reingests(
    emu: FlowServiceEmulator, tmp_path: Path
) -> None:
    flow = emu.add_flow(seconds_to_finish=1.0)
    dags = tmp_path / "dags"
    dags.mkdir()
    dag_file = dags / "crash_test.py"
    dag_file.write_text(DAG_FILE.replace("{flow_id}", flow))
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(DRIVER))
    emu.inject("slow", method="POST", delay=0.4)  # the run is created after the worker is gone

    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(dags), "PYTHONPATH": os.getcwd()}
    worker = subprocess.Popen(
        [sys.executable, str(driver), str(dag_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        reached = wait_until(lambda: len(posts(emu)) == 1 or worker.poll() is not None, timeout=60)
        assert reached and worker.poll() is None, "the worker ended before it could be killed"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
    printed = worker.stdout.read().decode(errors="replace") if worker.stdout else ""
    assert worker.returncode == -signal.SIGKILL, printed
    assert "finished" not in printed
    assert "xcom return_value" not in printed  # the worker never learned the run id
    assert polls(emu) == []

    # the run exists although its creator died (the server finished the request)
    assert wait_until(lambda: len(emu.runs_for_flow(flow)) == 1, timeout=5)
    (created,) = emu.runs_for_flow(flow)

    # the automatic retry: adopts the run of its window, no second POST, waits it to success
    task = load_task(dag_file)
    retry = execute(task, context_for(automatic_retry()))
    assert retry.result == created["id"]
    assert len(posts(emu)) == 1
    assert status_of(emu, created["id"]) == "success"

    # a deliberate clear afterwards is a first try again: a new run for the same window
    cleared = execute(load_task(dag_file), context_for(after_clear()))
    assert cleared.result != created["id"]
    assert len(posts(emu)) == 2
    assert len(emu.runs_for_flow(flow)) == 2
    assert status_of(emu, cleared.result) == "success"
