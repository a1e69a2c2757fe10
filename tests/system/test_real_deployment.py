"""System test: the backfill example DAG on a real Airflow deployment against the emulator.

Real services run as subprocesses in a fresh AIRFLOW_HOME with a sqlite metadata DB (see
``_airflow_services.py``):

- Airflow 3.x: ``api-server`` (127.0.0.1, free port; tasks talk to it through the Execution API),
  ``dag-processor``, ``scheduler`` (LocalExecutor) and ``triggerer``, as ``airflow standalone``
  runs them, SimpleAuthManager with all users admin.
- Airflow 2.11: ``scheduler`` (SequentialExecutor, the only executor 2.x allows on sqlite) and
  ``triggerer``.

The DAG file is the shipped backfill example with two changes: ``catchup=True`` and its
``start_date`` moved to three days ago, so that the scheduler's catchup creates exactly three daily
data intervals (``airflow backfill create`` is no alternative on 3.x, as the scheduler ignores the
backfill runs of a paused DAG). New DAGs start unpaused (``[core] dags_are_paused_at_creation=False``),
as in a deployment that sets it.

The emulator runs in this test process; the services get its connection through
``AIRFLOW_CONN_FLOW_SERVICE_DEFAULT`` and poll every second (``FLOW_SERVICE_POLL_INTERVAL=1``).

What makes it quick (all set in ``_airflow_services.py`` / below):
``[scheduler] scheduler_heartbeat_sec=1``, ``job_heartbeat_sec=1``, ``scheduler_idle_sleep_time=0.5``;
``[triggerer] job_heartbeat_sec=1``; 3.x ``[dag_processor] refresh_interval=2``,
``min_file_process_interval=30``, ``parsing_processes=1``, ``[api] workers=1``; 2.x
``[scheduler] dag_dir_list_interval=2``, ``min_file_process_interval=30``; ``--skip-serve-logs``
for the scheduler and triggerer (no log server ports). The DAG folder holds only the backfill example.

What it proves, per data interval:

- the task deferred (its task instance was seen in state ``deferred`` while a
  ``FlowServiceRunTrigger`` row was assigned to the triggerer job), resumed and succeeded on its
  first try;
- the polls came from the triggerer: the trigger's own log lines
  ("Flow run <id> status: ...; the triggerer polls it every ...") are in the triggerer-written log
  file of that task, and the flow runs' poll periods overlap although the deployment has ONE
  worker slot (``[core] parallelism=1``), which is only possible if the slot was released while
  waiting;
- the emulator holds exactly one flow run per interval, with ``windowStartTime`` /
  ``windowEndTime`` equal to the DAG run's data interval;
- no client secret or access token reached a log file, the trigger table or the DB;
- the whole deployment (task processes and triggerer) asked IMS for one token (the token file
  cache, in the test's own ``FLOW_SERVICE_TOKEN_CACHE_DIR``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_flowservice.testing.emulator import DEFAULT_FLOW_ID, FlowServiceEmulator
from tests.system._airflow_services import AIRFLOW_CLI, AirflowDeployment, running_deployment, wait_for

pytestmark = [
    pytest.mark.system,
    pytest.mark.timeout(420),
    pytest.mark.skipif(not Path(AIRFLOW_CLI).exists(), reason=f"no `airflow` command at {AIRFLOW_CLI}"),
]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DAG = REPO / "example_dags" / "example_flow_service_backfill.py"
DAG_ID = "example_flow_service_backfill"
TRIGGER_CLASSPATH = "airflow_provider_flowservice.triggers.flow_service.FlowServiceRunTrigger"
# The DAG is daily: with its start_date moved to three days ago, catchup makes three runs (four
# if the test happens to run across midnight UTC: see _expected_runs).
INTERVALS = 3
# Long enough for all three tasks to start and defer one after the other on one worker slot, and
# for the executor to report each deferral before its trigger fires.
SECONDS_TO_FINISH = 14.0
RUNS_TIMEOUT = 300.0  # from the services' start: parse, schedule, run, defer, resume


def _utc_seconds(value: str) -> int:
    """A DB timestamp (``2025-01-02 00:00:00.000000``, naive UTC, or ISO with offset) as unix seconds."""
    text = value.replace(" ", "T")
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


class Observation:
    """What a poller saw in the metadata DB while the DAG ran."""

    def __init__(self) -> None:
        self.ti_states: dict[str, set[str]] = {}
        self.triggers: dict[int, tuple[str, str, Any]] = {}  # id -> classpath, kwargs, triggerer_id

    def sample(self, deployment: AirflowDeployment) -> None:
        for run_id, state in deployment.query(
            "SELECT run_id, state FROM task_instance WHERE dag_id = ?", (DAG_ID,)
        ):
            self.ti_states.setdefault(run_id, set()).add(str(state))
        for trigger_id, classpath, kwargs, triggerer_id in deployment.query(
            "SELECT id, classpath, kwargs, triggerer_id FROM trigger"
        ):
            known = self.triggers.get(trigger_id)
            if known is None or known[2] is None:
                self.triggers[trigger_id] = (str(classpath), str(kwargs), triggerer_id)


def _copy_dag_starting(dags: Path, start: datetime) -> None:
    """Copy the example DAG into ``dags`` with ``start_date`` moved to ``start`` (all else as shipped).

    Unpaused with ``catchup=True``, the scheduler then creates exactly the runs of the whole days
    between ``start`` and now, as it would in a deployment that starts ingesting a few days back.
    """
    source = EXAMPLE_DAG.read_text()
    replacement = f'start_date=pendulum.datetime({start.year}, {start.month}, {start.day}, tz="UTC"),'
    patched, count = re.subn(r"start_date=pendulum\.datetime\([^)]*\),", replacement, source)
    assert count == 1, f"{EXAMPLE_DAG.name}: expected one `start_date=pendulum.datetime(...)`, found {count}"
    # The example ships with catchup=False (safe to unpause from the UI); catch-up is what makes
    # the scheduler run the recent days here.
    patched, count = re.subn(r"catchup=False,", "catchup=True,", patched)
    assert count == 1, f"{EXAMPLE_DAG.name}: expected one `catchup=False,`, found {count}"
    (dags / EXAMPLE_DAG.name).write_text(patched)


def _expected_runs(start: datetime) -> int:
    """Whole days between the DAG's start and now: the runs catchup creates."""
    return (datetime.now(UTC) - start).days


def _wait_for_runs(
    deployment: AirflowDeployment, seen: Observation, start: datetime
) -> list[tuple[Any, ...]]:
    def finished() -> list[tuple[Any, ...]] | None:
        seen.sample(deployment)
        deployment.check_alive()
        runs = deployment.query(
            "SELECT run_id, state, data_interval_start, data_interval_end FROM dag_run WHERE dag_id = ?",
            (DAG_ID,),
        )
        if len(runs) >= _expected_runs(start) and all(r[1] in ("success", "failed") for r in runs):
            return runs
        return None

    return wait_for(f"{INTERVALS} DAG runs of {DAG_ID} to end", finished, RUNS_TIMEOUT, interval=0.4)


def test_backfill_example_defers_to_triggerer_and_creates_one_run_per_interval(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=INTERVALS)
    _copy_dag_starting(dags, start)
    home = tmp_path / "airflow-home"
    home.mkdir()

    with FlowServiceEmulator() as emulator:
        emulator.add_flow(DEFAULT_FLOW_ID, kind="table", seconds_to_finish=SECONDS_TO_FINISH)
        env = {
            "AIRFLOW_CONN_FLOW_SERVICE_DEFAULT": emulator.connection_json(),
            "FLOW_SERVICE_FLOW_ID": DEFAULT_FLOW_ID,
            "FLOW_SERVICE_POLL_INTERVAL": "1",
            "AIRFLOW__CORE__PARALLELISM": "1",  # one worker slot: only deferral lets runs overlap
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",  # scheduled as soon as parsed
        }
        seen = Observation()
        with running_deployment(home, dags, env) as deployment:
            dag_runs = _wait_for_runs(deployment, seen, start)
            task_rows = deployment.query(
                "SELECT run_id, state, try_number FROM task_instance WHERE dag_id = ?", (DAG_ID,)
            )
            logs = deployment.task_logs()
            service_logs = {s.name: s.log_path.read_text(errors="replace") for s in deployment.services}
            try:
                _check(emulator, seen, dag_runs, task_rows, logs, service_logs, _expected_runs(start))
            except AssertionError:
                print(deployment.log_tails())
                raise


def _check(
    emulator: FlowServiceEmulator,
    seen: Observation,
    dag_runs: list[tuple[Any, ...]],
    task_rows: list[tuple[Any, ...]],
    logs: dict[Path, str],
    service_logs: dict[str, str],
    expected: int,
) -> None:
    # Every interval ran once and succeeded on its first try.
    assert len(dag_runs) == expected, dag_runs
    assert {r[1] for r in dag_runs} == {"success"}, dag_runs
    assert len(task_rows) == expected, task_rows
    assert all(state == "success" and try_number == 1 for _, state, try_number in task_rows), task_rows

    # ... after deferring to a FlowServiceRunTrigger that the triggerer picked up.
    for run_id, *_ in dag_runs:
        assert "deferred" in seen.ti_states.get(run_id, set()), (run_id, seen.ti_states)
    ours = [t for t in seen.triggers.values() if t[0] == TRIGGER_CLASSPATH]
    assert len(ours) == expected, seen.triggers
    assert all(triggerer_id is not None for *_, triggerer_id in ours), ours

    # One flow run per interval, window = data interval.
    flow_runs = emulator.runs_for_flow(DEFAULT_FLOW_ID)
    windows = sorted(
        (int(r["params"]["windowStartTime"]), int(r["params"]["windowEndTime"])) for r in flow_runs
    )
    intervals = sorted((_utc_seconds(r[2]), _utc_seconds(r[3])) for r in dag_runs)
    assert windows == intervals, (windows, intervals)
    assert all(r["metrics"]["statusSummary"]["status"] == "success" for r in flow_runs)

    # The polls: several per run, logged by the trigger in the triggerer-written log file.
    trigger_logs = "\n".join(text for path, text in logs.items() if ".trigger." in path.name)
    # A status read of a run is its own GET /runs/{id}, or a list of its flow's runs (the trigger
    # coalesces the polls of one flow's runs into one list per tick) sent while the run was waited
    # on: after its creation and up to its own last GET, which the trigger sends when it ends.
    polls: dict[str, list[float]] = {r["id"]: [] for r in flow_runs}
    requests_ = list(emulator.requests)
    for request in requests_:
        run_id = request.path.rsplit("/", 1)[-1]
        if request.method == "GET" and run_id in polls:
            polls[run_id].append(request.time)
    for run in flow_runs:
        own = polls[run["id"]]
        last = max(own) if own else float("inf")
        for request in requests_:
            listed = request.method == "GET" and request.path.endswith("/flowservice/runs")
            if listed and run["createdAt"] / 1000 <= request.time <= last:
                own.append(request.time)
    for run_id, times in polls.items():
        assert len(times) >= 3, (run_id, len(times))
        first_line = rf"Flow run {run_id} status: \w+; flow {DEFAULT_FLOW_ID}; the triggerer polls it every"
        assert re.search(first_line, trigger_logs), f"no trigger log for flow run {run_id}"
    spans = sorted((min(t), max(t)) for t in polls.values())
    origin = spans[0][0]
    print("flow runs polled (seconds from the first poll):",
          [(round(a - origin, 1), round(b - origin, 1)) for a, b in spans],
          "polls per run:", sorted(len(t) for t in polls.values()))
    overlapping = any(spans[i + 1][0] < spans[i][1] for i in range(len(spans) - 1))
    assert overlapping, f"flow runs were polled one after the other on one worker slot: {spans}"

    # One IMS token for the whole deployment: task processes and the triggerer share the token file.
    print("IMS token requests:", emulator.token_requests)
    assert emulator.token_requests == 1, emulator.token_requests

    # No secret anywhere: logs, trigger kwargs.
    secrets_ = [emulator.client_secret, *emulator.tokens_issued]
    assert emulator.tokens_issued, "the services never fetched a token"
    everything = "\n".join([*logs.values(), *service_logs.values(), *(t[1] for t in seen.triggers.values())])
    leaked = [s[:4] + "..." for s in secrets_ if s and s in everything]
    assert not leaked, f"secrets found in logs or trigger kwargs: {leaked}"
