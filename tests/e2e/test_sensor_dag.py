"""FlowServiceRunSensor in real DAG runs, in poke, reschedule and deferrable modes.

One DAG per mode holds one independent sensor task per scenario; each task watches its own run,
created beforehand on an emulator flow with the scenario's outcome. ``dag.test()`` runs the DAG
once per mode (reschedules and the trigger included), then each test checks one task.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_provider_flowservice.exceptions import FlowServiceRunError
from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook
from airflow_provider_flowservice.sensors.flow_service import FlowServiceRunSensor
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator
from tests.e2e.harness import DagResult, record_failure, run_dag

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.x
    from airflow import DAG

MODES = ["poke", "reschedule", "deferrable"]
NEVER = 10**6
SENSOR_TIMEOUT = 60.0
SHORT_TIMEOUT = 1.0

# task id -> (flow outcome or "running", sensor kwargs, expected final task state)
SCENARIOS: dict[str, tuple[str, dict[str, Any], str]] = {
    "success": ("success", {}, "success"),
    "failed": ("failed", {"retries": 2, "retry_delay": timedelta(seconds=0)}, "failed"),
    "partial_refused": ("partialSuccess", {}, "failed"),
    "partial_allowed": ("partialSuccess", {"allow_partial_success": True}, "success"),
    "failed_soft": ("failed", {"soft_fail": True}, "skipped"),
    "timeout": ("running", {"timeout": SHORT_TIMEOUT}, "failed"),
    "timeout_soft": ("running", {"timeout": SHORT_TIMEOUT, "soft_fail": True}, "skipped"),
}


@dataclass
class ModeRun:
    mode: str
    result: DagResult
    run_ids: dict[str, str]
    emulator: FlowServiceEmulator
    seconds: float

    def polls(self, task_id: str) -> list[Any]:
        run_id = self.run_ids[task_id]
        return [r for r in self.emulator.requests if r.method == "GET" and r.path.endswith(f"/runs/{run_id}")]


def _sensor_dag(mode: str, run_ids: dict[str, str]) -> Any:
    with DAG(
        dag_id=f"e2e_sensor_{mode}",
        schedule=None,
        start_date=datetime(2025, 1, 1, tzinfo=UTC),
        default_args={"on_failure_callback": record_failure},
    ) as dag:
        for task_id, (_, scenario_kwargs, _) in SCENARIOS.items():
            kwargs = {"timeout": SENSOR_TIMEOUT, **scenario_kwargs}
            FlowServiceRunSensor(
                task_id=task_id,
                run_id=run_ids[task_id],
                poll_interval=0.1,
                deferrable=mode == "deferrable",
                mode="reschedule" if mode == "reschedule" else "poke",
                **kwargs,
            )
    return dag


@pytest.fixture(scope="module", params=MODES)
def mode_run(request: pytest.FixtureRequest, e2e_emulator: FlowServiceEmulator) -> ModeRun:
    flows = {
        outcome: e2e_emulator.add_flow(kind="file", outcome=outcome if outcome != "running" else "success",
                                      polls_to_finish=NEVER if outcome == "running" else 2)
        for outcome in ("success", "failed", "partialSuccess", "running")
    }
    hook = FlowServiceHook()
    run_ids = {}
    for index, (task_id, (outcome, _, _)) in enumerate(SCENARIOS.items()):
        start = 1735689600 + index * 3600
        run_ids[task_id] = hook.create_run(flows[outcome], start, start + 3600).run_id
    e2e_emulator.reset_requests()
    started = time.monotonic()
    result = run_dag(_sensor_dag(request.param, run_ids))
    return ModeRun(request.param, result, run_ids, e2e_emulator, time.monotonic() - started)


def _state(mode_run: ModeRun, task_id: str) -> str:
    return mode_run.result.states[task_id]


@pytest.mark.parametrize("task_id", list(SCENARIOS))
def test_final_task_state(mode_run: ModeRun, task_id: str) -> None:
    expected = SCENARIOS[task_id][2]
    assert _state(mode_run, task_id) == expected, mode_run.result.errors.get(task_id)


def test_success_returns_the_run_summary(mode_run: ModeRun) -> None:
    summary = mode_run.result.xcom("success")
    assert summary["run_id"] == mode_run.run_ids["success"]
    assert summary["status"] == "success"
    assert summary["files"]["outputFileCount"] == 2
    assert len(mode_run.polls("success")) >= 2  # saw it running, then done
    assert mode_run.result.xcom("success", key="run_url").startswith("https://")


def test_failed_run_fails_at_once_with_its_errors(mode_run: ModeRun) -> None:
    error = mode_run.result.errors["failed"]
    assert isinstance(error, FlowServiceRunError)
    message = str(error)
    assert mode_run.run_ids["failed"] in message
    assert "CONNECTOR-2001-500" in message
    assert "'failed'" in message
    # No retry (retries=2 was set): a finished run cannot change.
    assert mode_run.result.task_instances["failed"].try_number == 1
    polls = mode_run.polls("failed")
    assert len(polls) <= 4, "the sensor kept polling a failed run"
    assert polls[-1].time - polls[0].time < SENSOR_TIMEOUT / 4


def test_partial_success_is_refused_unless_allowed(mode_run: ModeRun) -> None:
    message = str(mode_run.result.errors["partial_refused"])
    assert "partialSuccess" in message
    assert "allow_partial_success=True" in message
    assert mode_run.result.xcom("partial_allowed")["status"] == "partialSuccess"


def test_timeout_fails_with_a_clear_message(mode_run: ModeRun) -> None:
    error = mode_run.result.errors["timeout"]
    assert type(error).__name__ == "AirflowSensorTimeout"
    message = str(error)
    assert mode_run.run_ids["timeout"] in message
    assert "timeout=" in message  # says what to change


def test_no_sensor_waits_for_its_full_timeout(mode_run: ModeRun) -> None:
    # Seven sensors in one DAG run: the two timeout scenarios wait SHORT_TIMEOUT each; a failed or
    # partially successful run must not keep its sensor waiting for SENSOR_TIMEOUT.
    assert mode_run.seconds < SENSOR_TIMEOUT
