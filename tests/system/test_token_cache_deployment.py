"""System test: a reschedule-mode sensor and parallel tasks on a real deployment ask IMS for ONE token.

Real services as in ``test_real_deployment.py`` (``_airflow_services.py``). The DAG has a
``FlowServiceRunSensor`` in ``mode="reschedule"`` (``poll_interval=2``) on a flow run that finishes
on its 4th poll, so each poke is a new task process, and three ``get_flow`` tasks that run alongside
it. Without the token file cache each of those processes asks IMS for a token (what users saw: one
"Requesting an Adobe IMS access token" per poke); with it, the first one does and the others read
the file (``FLOW_SERVICE_TOKEN_CACHE_DIR``, inherited from the test session, is the test's own).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator
from tests.system._airflow_services import AIRFLOW_CLI, running_deployment, wait_for

pytestmark = [
    pytest.mark.system,
    pytest.mark.timeout(420),
    pytest.mark.skipif(not Path(AIRFLOW_CLI).exists(), reason=f"no `airflow` command at {AIRFLOW_CLI}"),
]

DAG_ID = "token_cache_reschedule"
POKES = 4
DAG = textwrap.dedent(
    f"""
    import os
    from datetime import datetime, timedelta

    from airflow_provider_flowservice.sensors.flow_service import FlowServiceRunSensor
    from airflow_provider_flowservice.version_compat import AIRFLOW_V_3_0_PLUS

    if AIRFLOW_V_3_0_PLUS:
        from airflow.sdk import DAG, task
    else:
        from airflow import DAG
        from airflow.decorators import task

    with DAG("{DAG_ID}", start_date=datetime(2024, 1, 1), schedule=None, catchup=False):

        @task
        def read_flow(i: int) -> str:
            from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook

            return FlowServiceHook().get_flow(os.environ["FLOW_SERVICE_FLOW_ID"]).id

        for i in range(3):
            read_flow.override(task_id=f"read_flow_{{i}}")(i)
        # retries: under load Airflow's scheduler can fail a fast-rescheduling sensor ("Executor
        # reported ... success, but ... running"); a retry is one more process reading the token file.
        FlowServiceRunSensor(
            task_id="wait",
            run_id=os.environ["FLOW_SERVICE_RUN_ID"],
            mode="reschedule",
            poll_interval=2,
            retries=2,
            retry_delay=timedelta(seconds=1),
        )
    """
)


def test_reschedule_pokes_and_parallel_tasks_ask_ims_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "token_cache_dag.py").write_text(DAG)
    home = tmp_path / "airflow-home"
    home.mkdir()
    with FlowServiceEmulator() as emulator:
        flow = emulator.add_flow(kind="table", polls_to_finish=POKES)
        monkeypatch.setenv("AIRFLOW_CONN_SETUP", emulator.connection_json(token_cache="false"))
        run_id = FlowServiceHook("setup").create_run(flow, 1704067200, 1704070800).run_id
        setup_requests = emulator.token_requests
        env = {
            "AIRFLOW_CONN_FLOW_SERVICE_DEFAULT": emulator.connection_json(),
            "FLOW_SERVICE_FLOW_ID": flow,
            "FLOW_SERVICE_RUN_ID": run_id,
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        }
        with running_deployment(home, dags, env) as deployment:
            wait_for(
                f"DAG {DAG_ID} to be parsed",
                lambda: deployment.query("SELECT dag_id FROM dag WHERE dag_id = ?", (DAG_ID,)),
                180,
            )
            deployment.cli("dags", "trigger", DAG_ID)

            def finished() -> list[tuple[object, ...]] | None:
                rows = deployment.query("SELECT state FROM dag_run WHERE dag_id = ?", (DAG_ID,))
                return rows if rows and rows[0][0] in ("success", "failed") else None

            [(state,)] = wait_for(f"the run of {DAG_ID} to end", finished, 300, interval=0.5)
            tasks = dict(
                deployment.query("SELECT task_id, state FROM task_instance WHERE dag_id = ?", (DAG_ID,))
            )
            logs = deployment.task_logs()
        polls = [r for r in emulator.requests if r.method == "GET" and r.path.endswith(run_id)]
        ims = emulator.token_requests - setup_requests
        print(f"task states {tasks}; sensor polls {len(polls)}; IMS token requests {ims}")
        assert state == "success", (tasks, deployment.log_tails())
        assert len(polls) >= POKES  # each poke its own process (reschedule mode)
        requested = sum(text.count("Requesting an Adobe IMS access token") for text in logs.values())
        assert requested <= 1, requested  # the line users saw on every poke
        assert ims == 1, f"{ims} IMS token requests for {len(polls)} pokes and 3 tasks"
