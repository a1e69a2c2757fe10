"""A real distributed deployment survives real crashes (CeleryExecutor, PostgreSQL, Redis, 2+2 services).

Everything runs on 127.0.0.1 on free ports (see ``_cluster.py`` and ``tests/system/_postgres.py``): a
throw-away PostgreSQL cluster, Redis, and Airflow 3.x's ``api-server``, ``dag-processor``,
``scheduler``, two ``celery worker`` and two ``triggerer`` processes, plus the Flow Service emulator
in this process with random faults and latency on and ``identify_peers`` (it records which local PID
sent each request, so every poll is attributed to the triggerer or worker process that sent it,
without the client's cooperation).

The workload: ``airflow backfill create`` of ``INTERVALS`` hourly intervals of a deferrable
per-interval DAG (``max_active_runs`` 8) and ``MANUAL_RUNS`` manual runs of a DAG whose sensor
waits in ``reschedule`` mode.

The faults, each on a real process by PID, while that work is in flight:

1. a Celery worker is SIGKILLed (its whole process group) while one of its tasks waits between
   ``POST /runs`` and the answer (the emulator creates the run, then holds the answer);
2. once both triggerers heartbeat, the one holding the most running flow runs is SIGKILLed; the
   other must take its triggers over (the health threshold is ``TRIGGERER_THRESHOLD`` s), then the
   killed one is started again;
3. the scheduler is SIGKILLed and started again;
4. the API server is stopped (SIGTERM) and started again;
5. Redis is frozen (SIGSTOP) for ``REDIS_PAUSE`` s, then resumed (SIGCONT).

What it asserts: every interval (and every manual window) ends with exactly one flow run, which
succeeded, counted on the emulator; every DAG run succeeded (task retries allowed and counted); the
killed worker's task was retried and adopted the run its dead try had created; no secret (client
secret, any issued token; raw, URL-encoded, JSON-escaped or base64) in any service log, task log,
XCom or trigger row; each run's polls came from one triggerer at a time, a handover happening only
around a takeover. Figures are printed (``make test-deployment`` shows them; docs/production.md
quotes them).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator, RecordedRequest
from tests.deployment._cluster import (
    CeleryDeployment,
    Kill,
    RedisServer,
    why_skipped,
)
from tests.system._airflow_services import AIRFLOW_CLI, AirflowDeployment, wait_for
from tests.system._postgres import PostgresCluster

SKIP_REASON = why_skipped()
AIRFLOW_3 = int(__import__("airflow").__version__.split(".")[0]) >= 3
pytestmark = [
    pytest.mark.skipif(
        not AIRFLOW_3, reason="the deployment test runs Airflow 3.x services (api-server, Task SDK)"
    ),
    pytest.mark.deployment,
    pytest.mark.timeout(1500),
    pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or ""),
    pytest.mark.skipif(not Path(AIRFLOW_CLI).exists(), reason=f"no `airflow` command at {AIRFLOW_CLI}"),
]

HERE = Path(__file__).resolve().parent
INTERVAL_DAG = "deployment_per_interval"
MANUAL_DAG = "deployment_manual_sensor"
INTERVAL_FLOW = "0a1b2c3d-0000-4000-8000-000000000001"
MANUAL_FLOW = "0a1b2c3d-0000-4000-8000-000000000002"
BACKFILL_FROM = datetime(2026, 1, 1, tzinfo=UTC)
INTERVALS = 24  # hourly: 2026-01-01T00..23
MANUAL_RUNS = 3
# A flow run's length: long enough for triggers to be held when a triggerer dies, and for a held
# run to get its own GET /runs/{id} (the holder's mark, below) in its life: a coalesced trigger
# sends one every 30 ticks of 2 s, so a 30 s run gets one with a chance of one in two.
FLOW_SECONDS = 30.0
MANUAL_FLOW_SECONDS = 10.0
POLL_INTERVAL = 2
TRIGGERER_THRESHOLD = 10
TASK_HEARTBEAT_TIMEOUT = 30
HELD_ANSWER = 45.0  # the POST /runs answer the killed worker waits for (it never gets it)
REDIS_PAUSE = 6.0
RANDOM_FAULT_RATE = 0.05
RANDOM_FAULTS = ("429", "503", "502_after_create", "drop_after_create", "reset", "slow", "401")
WORKLOAD_TIMEOUT = 480.0
HANDOVER_OVERLAP = 3 * POLL_INTERVAL + 4  # how long two triggerers may both poll one run at a handover
TRIGGERER_PREFIX = "triggerer-"
WORKER_PREFIX = "worker-"


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture
def postgres() -> Iterator[PostgresCluster]:
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    with RedisServer(workdir) as server:
        yield server


@pytest.fixture
def emulator() -> Iterator[FlowServiceEmulator]:
    with FlowServiceEmulator(identify_peers=True, token_ttl=120) as emu:
        emu.add_flow(INTERVAL_FLOW, kind="table", delta_column="updated_at", seconds_to_finish=FLOW_SECONDS)
        emu.add_flow(MANUAL_FLOW, kind="file", seconds_to_finish=MANUAL_FLOW_SECONDS)
        yield emu


@pytest.fixture
def deployment(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres: PostgresCluster,
    redis: RedisServer,
    emulator: FlowServiceEmulator,
) -> Iterator[CeleryDeployment]:
    dags = tmp_path / "dags"
    dags.mkdir()
    for source in (HERE / "dags").glob("*.py"):
        shutil.copy(source, dags / source.name)
    home = tmp_path / "airflow-home"
    home.mkdir()
    env = {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": redis.url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + postgres.sqlalchemy_url,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
        "AIRFLOW__CELERY__OPERATION_TIMEOUT": "5",
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "300",
        "AIRFLOW__CORE__PARALLELISM": "16",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(TRIGGERER_THRESHOLD),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(TASK_HEARTBEAT_TIMEOUT),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "10",
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
        "AIRFLOW_CONN_FLOW_SERVICE_DEFAULT": emulator.connection_json(),
        "DEPLOYMENT_INTERVAL_FLOW_ID": INTERVAL_FLOW,
        "DEPLOYMENT_MANUAL_FLOW_ID": MANUAL_FLOW,
        "DEPLOYMENT_MAX_ACTIVE_RUNS": "8",
        "FLOW_SERVICE_POLL_INTERVAL": str(POLL_INTERVAL),
        # The cross-process IMS token cache: private to this deployment (a fresh emulator each run).
        "FLOW_SERVICE_TOKEN_CACHE_DIR": str(tmp_path / "ims-tokens"),
    }
    airflow = AirflowDeployment(home=home, dags_folder=dags, extra_env=env, postgres=postgres)
    cluster = CeleryDeployment(airflow)
    try:
        airflow.migrate()
        # All at once (a slow machine starts them in parallel); no task runs before the API answers,
        # as the workload is only submitted once both DAGs are parsed and the API is up.
        cluster.start("api-server", ["api-server"])
        cluster.start("dag-processor", ["dag-processor"])
        cluster.start("scheduler", ["scheduler", "--skip-serve-logs"])
        for n in (1, 2):
            cluster.start(f"{TRIGGERER_PREFIX}{n}", ["triggerer", "--skip-serve-logs"])
            cluster.start(
                f"{WORKER_PREFIX}{n}",
                [
                    "celery",
                    "worker",
                    "--skip-serve-logs",
                    "--concurrency",
                    "4",
                    "--celery-hostname",
                    f"worker{n}@127.0.0.1",
                    "--without-gossip",
                    "--without-mingle",
                ],
            )
        cluster.wait_api_ready(timeout=240)
        yield cluster
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(airflow.log_tails(40))
    except BaseException:
        print(airflow.log_tails(40))
        raise
    finally:
        airflow.stop()


# ---------------------------------------------------------------------------------------------- helpers
def _runs_of(requests: list[RecordedRequest], flow_runs: set[str]) -> dict[str, list[RecordedRequest]]:
    """GET /runs/{id} polls per flow run id."""
    polls: dict[str, list[RecordedRequest]] = defaultdict(list)
    for request in requests:
        run_id = request.path.rsplit("/", 1)[-1]
        if request.method == "GET" and "/runs/" in request.path and run_id in flow_runs:
            polls[run_id].append(request)
    return polls


def _dag_runs(postgres: PostgresCluster) -> list[tuple[Any, ...]]:
    return postgres.query(
        "SELECT dag_id, run_id, state, run_type, data_interval_start, data_interval_end FROM dag_run"
    )


def _in_flight(postgres: PostgresCluster) -> int:
    return len(postgres.query("SELECT 1 FROM dag_run WHERE state IN ('running', 'queued')"))


BACKGROUND: list[Future[Any]] = []
"""The workload's CLI calls running in the background: a failed one fails the current wait at once."""


def _wait(
    what: str,
    probe: Callable[[], Any],
    timeout: float,
    cluster: CeleryDeployment,
    state: Callable[[], str] | None = None,
) -> Any:
    """``wait_for`` that also fails at once when a workload call or a service died; on a timeout the
    message ends with ``state()``, what the probe was looking at (a flaky wait is then explained)."""

    def checked() -> Any:
        for future in BACKGROUND:
            if future.done() and future.exception() is not None:
                raise RuntimeError(
                    f"a workload CLI call failed while waiting for {what}"
                ) from future.exception()
        cluster.check_alive()
        cluster.sample_owners()
        return probe()

    try:
        return wait_for(what, checked, timeout, interval=0.3)
    except TimeoutError as exc:
        if state is None:
            raise
        raise TimeoutError(f"{exc}; {state()}") from None


def _secret_forms(secret: str) -> set[str]:
    """A secret as it could appear in text: raw, URL-encoded, JSON-escaped, base64."""
    return {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        base64.b64encode(secret.encode()).decode().rstrip("="),
    }


# ---------------------------------------------------------------------------------------------- the test
def test_celery_deployment_survives_real_crashes(
    deployment: CeleryDeployment, postgres: PostgresCluster, redis: RedisServer, emulator: FlowServiceEmulator
) -> None:
    started = time.monotonic()
    cluster, airflow = deployment, deployment.airflow
    in_flight_at: dict[str, int] = {}

    _wait(
        "both DAGs to be parsed",
        lambda: (
            len(postgres.query("SELECT dag_id FROM dag WHERE dag_id IN (%s, %s)", (INTERVAL_DAG, MANUAL_DAG)))
            == 2
        ),
        120,
        cluster,
    )
    # Latency and random faults on every Flow Service request; one POST /runs whose answer is held
    # (the run is created at once) so that a worker can be killed while waiting for it.
    emulator.set_random_faults(RANDOM_FAULT_RATE, RANDOM_FAULTS, seed=11, delay=0.4)
    emulator.inject("slow_after_create", method="POST", path="/runs", delay=HELD_ANSWER)

    # The workload, submitted in the background (each CLI call costs seconds of start-up) while the
    # faults below are aimed at it.
    last = BACKFILL_FROM + timedelta(hours=INTERVALS - 1)
    submissions = [
        (
            "backfill",
            "create",
            "--dag-id",
            INTERVAL_DAG,
            "--from-date",
            BACKFILL_FROM.isoformat(),
            "--to-date",
            last.isoformat(),
            "--max-active-runs",
            "8",
        ),
    ]
    manual_windows = []
    for n in range(MANUAL_RUNS):
        start = datetime(2025, 6, 1 + n, tzinfo=UTC)
        window = {"window_start": start.isoformat(), "window_end": (start + timedelta(days=1)).isoformat()}
        manual_windows.append((int(start.timestamp()), int(start.timestamp()) + 86400))
        submissions.append(
            ("dags", "trigger", MANUAL_DAG, "--run-id", f"manual-{n}", "--conf", json.dumps(window))
        )
    # One after the other: concurrent CLI calls were seen to stall `backfill create` on PostgreSQL.
    pool = ThreadPoolExecutor(max_workers=1)
    submitted = [pool.submit(airflow.cli, *args, timeout=300) for args in submissions]
    BACKGROUND[:] = submitted
    pool.shutdown(wait=False)
    print(f"workload submitted {time.monotonic() - started:.0f}s after the DAGs were parsed", flush=True)

    # 1. kill -9 the Celery worker whose task waits for the held POST /runs answer.
    held: RecordedRequest = _wait(
        "a POST /runs whose answer the emulator holds",
        lambda: next((r for r in emulator.requests if r.fault == "slow_after_create"), None),
        300,
        cluster,
    )
    print(f"held POST /runs seen at {time.monotonic() - started:.0f}s", flush=True)
    held_owner = cluster.sender_of(held)
    assert held_owner and held_owner.startswith(WORKER_PREFIX), (held.peer_pid, held_owner)
    held_window = (int(held.body["params"]["windowStartTime"]), int(held.body["params"]["windowEndTime"]))
    in_flight_at["worker"] = _in_flight(postgres)
    cluster.kill(held_owner, "worker", note=f"task waiting for POST /runs of window {held_window}")
    time.sleep(3)
    cluster.restart(held_owner)

    # 2. kill -9 the triggerer holding the most waiting runs; the other must take its triggers over.
    # Polls are coalesced (triggers/_flow_board.py): a triggerer lists a flow's runs once per tick and
    # sends its own GET /runs/{id} mostly when a run has ended (the event is built from that GET), so a
    # recent GET /runs/{id} mostly means "this trigger just fired". A run's holder is the triggerer that
    # sent the last GET /runs/{id} for it; it still holds the trigger only while the run has not ended
    # on the emulator (a trigger cannot fire before): those runs, ending after the kill, are orphaned.
    def interval_runs_end_at() -> dict[str, float]:
        """When each flow run of the backfill ends on the emulator (unix seconds)."""
        return {
            run["id"]: run["createdAt"] / 1000 + FLOW_SECONDS for run in emulator.runs_for_flow(INTERVAL_FLOW)
        }

    def held_runs() -> dict[str, set[str]]:
        now = time.time()
        holder: dict[str, str] = {}
        for request in emulator.requests:
            if request.method == "GET" and "/runs/" in request.path:
                owner = cluster.sender_of(request)
                if owner and owner.startswith(TRIGGERER_PREFIX):
                    holder[request.path.rsplit("/", 1)[-1]] = owner
        ends_at = interval_runs_end_at()
        held: dict[str, set[str]] = defaultdict(set)
        for run_id, owner in holder.items():
            if ends_at.get(run_id, 0.0) > now + POLL_INTERVAL:  # still running well after the kill
                held[owner].add(run_id)
        return held

    def healthy_triggerers() -> int:
        """Triggerer jobs with a fresh heartbeat in the metadata DB: each can take a dead one's
        triggers over."""
        rows = postgres.query(
            "SELECT 1 FROM job WHERE job_type = 'TriggererJob' AND state = 'running'"
            " AND latest_heartbeat > now() - %s * interval '1 second'",
            (TRIGGERER_THRESHOLD,),
        )
        return len(rows)

    def busiest_triggerer() -> tuple[str, set[str]] | None:
        # Both triggerers up; the survivor need not hold triggers yet. Airflow does not share
        # triggers evenly (each triggerer claims every unassigned one it finds, first come): this
        # test saw all of them on one triggerer for long stretches, and a CI run whose wait needed
        # both to poll at once timed out after the whole workload had ended.
        if healthy_triggerers() < 2:
            return None
        held = held_runs()
        if not held:
            return None
        name, runs = max(held.items(), key=lambda item: len(item[1]))
        return (name, runs) if runs else None

    wait_began = time.time()

    def triggerer_state() -> str:
        """What busiest_triggerer() saw, for a timeout's message."""
        ends_at = interval_runs_end_at()
        reads_of_running: Counter[str | None] = Counter(
            cluster.sender_of(r)
            for r in emulator.requests
            if r.time >= wait_began and r.method == "GET" and "/runs/" in r.path
            if ends_at.get(r.path.rsplit("/", 1)[-1], 0.0) > r.time + POLL_INTERVAL
        )
        rows = postgres.query("SELECT triggerer_id, count(*) FROM trigger GROUP BY triggerer_id")
        return (
            f"healthy triggerers {healthy_triggerers()}, GET /runs/{{id}} of running runs since the wait "
            f"began by sender {dict(reads_of_running)}, trigger rows by triggerer job {rows}, "
            f"DAG runs in flight {_in_flight(postgres)}"
        )

    victim, orphaned = _wait(
        "both triggerers up, one holding running flow runs",
        busiest_triggerer,
        240,
        cluster,
        state=triggerer_state,
    )
    in_flight_at["triggerer"] = _in_flight(postgres)
    killed = cluster.kill(victim, "triggerer", note=f"holding {len(orphaned)} running flow runs")
    print(
        f"{victim} killed at {time.monotonic() - started:.0f}s holding {len(orphaned)} running runs",
        flush=True,
    )
    survivor = next(n for n in cluster.names(TRIGGERER_PREFIX) if n != victim)

    reassigned_at: list[float] = []

    def taken_over() -> bool:
        # The metadata DB: every trigger row assigned, all to one triggerer job (the survivor's).
        if not reassigned_at:
            rows = postgres.query("SELECT triggerer_id FROM trigger")
            if rows and len({r[0] for r in rows}) == 1 and rows[0][0] is not None:
                reassigned_at.append(time.time())
        seen = {
            r.path.rsplit("/", 1)[-1]
            for r in emulator.requests
            if r.time > killed.at and r.method == "GET" and cluster.sender_of(r) == survivor
        }
        return orphaned <= seen

    _wait(
        f"{survivor} to take over {len(orphaned)} triggers of {victim}",
        taken_over,
        TRIGGERER_THRESHOLD + 60,
        cluster,
    )
    takeover_seconds = (
        max(
            min(
                r.time
                for r in emulator.requests
                if r.time > killed.at and r.path.endswith(run) and cluster.sender_of(r) == survivor
            )
            for run in orphaned
        )
        - killed.at
    )
    cluster.restart(victim)

    # 3. kill -9 the scheduler, start it again.
    in_flight_at["scheduler"] = _in_flight(postgres)
    cluster.kill("scheduler", "scheduler")
    time.sleep(5)
    cluster.restart("scheduler")

    # 4. restart the API server while tasks run.
    in_flight_at["api-server"] = _in_flight(postgres)
    cluster.terminate("api-server", "api-server")
    cluster.restart("api-server")
    cluster.wait_api_ready(timeout=300)  # a cold API server start takes minutes on a loaded 2-core box

    # 5. freeze Redis for a few seconds.
    in_flight_at["redis"] = _in_flight(postgres)
    redis.pause(REDIS_PAUSE)
    cluster.kills.append(
        Kill("redis", "redis", time.time() - REDIS_PAUSE, redis.proc.pid if redis.proc else 0)
    )

    for future in submitted:
        future.result(timeout=600)  # raises if a CLI call failed

    def all_done() -> list[tuple[Any, ...]] | None:
        runs = _dag_runs(postgres)
        if len(runs) >= INTERVALS + MANUAL_RUNS and all(r[2] in ("success", "failed") for r in runs):
            return runs
        return None

    try:
        dag_runs = _wait("every DAG run to end", all_done, WORKLOAD_TIMEOUT, cluster)
    finally:
        emulator.set_random_faults(0, [])
    wall = time.monotonic() - started
    cluster.sample_owners()

    # ------------------------------------------------------------------------------------ the counts
    task_rows = postgres.query("SELECT dag_id, run_id, task_id, state, try_number FROM task_instance")
    retries = sum(max(0, int(t[4]) - 1) for t in task_rows)
    interval_runs = [r for r in dag_runs if r[0] == INTERVAL_DAG]
    manual_runs = [r for r in dag_runs if r[0] == MANUAL_DAG]
    intervals = sorted((int(r[4].timestamp()), int(r[5].timestamp())) for r in interval_runs)
    flow_runs = emulator.runs_for_flow(INTERVAL_FLOW) + emulator.runs_for_flow(MANUAL_FLOW)
    by_window: dict[tuple[str, int, int], list[dict[str, Any]]] = defaultdict(list)
    for run in flow_runs:
        window = (int(run["params"]["windowStartTime"]), int(run["params"]["windowEndTime"]))
        by_window[(run["flowId"], *window)].append(run)
    expected = [(INTERVAL_FLOW, *w) for w in intervals] + [(MANUAL_FLOW, *w) for w in manual_windows]
    duplicates = sum(len(by_window[w]) - 1 for w in expected if len(by_window[w]) > 1)
    lost = [
        w
        for w in expected
        if not any(r["metrics"]["statusSummary"]["status"] == "success" for r in by_window.get(w, []))
    ]
    kills = Counter(k.kind for k in cluster.kills)

    # Polls: which process sent each one; the handovers between triggerers.
    polls = _runs_of(list(emulator.requests), {r["id"] for r in flow_runs})
    unknown = [r for reqs in polls.values() for r in reqs if cluster.sender_of(r) is None]
    handovers: list[tuple[str, str, str, float, float]] = []  # run, from, to, at, overlap seconds
    for run_id, requests in polls.items():
        by_triggerer = [(r.time, cluster.sender_of(r)) for r in requests]
        by_triggerer = [(t, o) for t, o in by_triggerer if o and o.startswith(TRIGGERER_PREFIX)]
        spans: dict[str, tuple[float, float]] = {}
        for t, owner in by_triggerer:
            first, last_seen = spans.get(owner, (t, t))
            spans[owner] = (min(first, t), max(last_seen, t))
        ordered = sorted(spans.items(), key=lambda item: item[1][0])
        for (a, (_, a_end)), (b, (b_start, _)) in itertools.pairwise(ordered):
            handovers.append((run_id, a, b, b_start, max(0.0, a_end - b_start)))
    kill_handovers = [
        h for h in handovers if h[1] == victim and abs(h[3] - killed.at) < TRIGGERER_THRESHOLD + 60
    ]

    figures = {
        "intervals (backfill, hourly)": len(interval_runs),
        "manual runs (sensor in reschedule mode)": len(manual_runs),
        "kills: Celery worker (SIGKILL, during POST /runs)": kills["worker"],
        "kills: triggerer (SIGKILL, holding triggers)": kills["triggerer"],
        "kills: scheduler (SIGKILL + restart)": kills["scheduler"],
        "restarts: API server (SIGTERM + restart)": kills["api-server"],
        "Redis frozen (SIGSTOP/SIGCONT, seconds)": REDIS_PAUSE if kills["redis"] else 0,
        "random faults served by the emulator": sum(1 for r in emulator.requests if r.fault),
        "task retries used": retries,
        "duplicate flow runs": duplicates,
        "lost runs": len(lost),
        "IMS token requests": emulator.token_requests,
        "flow runs polled": len(polls),
        "poll handovers between triggerers": len(handovers),
        "takeover after the triggerer kill (s, triggers reassigned in the DB)": (
            round(reassigned_at[0] - killed.at, 1) if reassigned_at else "not seen"
        ),
        "survivor's first own GET of every orphaned run (s after the kill)": round(takeover_seconds, 1),
        "wall time (s, from first DAG parse)": round(wall, 1),
    }
    print("\nDEPLOYMENT FIGURES")
    for name, value in figures.items():
        print(f"  {name}: {value}")
    print("  DAG runs in flight at each fault:", in_flight_at)

    # ------------------------------------------------------------------------------------ the asserts
    assert len(interval_runs) == INTERVALS, interval_runs
    assert {r[3] for r in interval_runs} == {"backfill"}, interval_runs
    assert len(manual_runs) == MANUAL_RUNS, manual_runs
    failed = [r for r in dag_runs if r[2] != "success"]
    assert not failed, f"DAG runs not successful: {failed}\n{airflow.log_tails(30)}"
    assert all(n > 0 for n in in_flight_at.values()), f"a fault hit an idle deployment: {in_flight_at}"
    assert duplicates == 0, {w: [r["id"] for r in rs] for w, rs in by_window.items() if len(rs) > 1}
    assert not lost, lost
    assert set(by_window) == set(expected), set(by_window) ^ set(expected)
    # The killed worker's task came back as a retry and adopted the run its dead try had created.
    held_key = (
        (INTERVAL_FLOW, *held_window)
        if (INTERVAL_FLOW, *held_window) in by_window
        else (MANUAL_FLOW, *held_window)
    )
    assert len(by_window[held_key]) == 1
    assert retries >= 1, task_rows
    # Each run polled from one triggerer at a time: a handover only around a takeover, with a brief overlap.
    assert not unknown, f"{len(unknown)} polls from processes outside the deployment"
    assert kill_handovers, f"no run moved from {victim} to {survivor}: {handovers}"
    long_overlaps = [h for h in handovers if h[4] > HANDOVER_OVERLAP]
    assert not long_overlaps, (
        f"two triggerers polled one run at once for longer than a takeover: {long_overlaps}"
    )
    per_run = Counter(h[0] for h in handovers)
    assert all(n <= kills["triggerer"] + 1 for n in per_run.values()), handovers
    # No secret in any service log, task log, XCom value or trigger row.
    secrets = [emulator.client_secret, *emulator.tokens_issued]
    assert emulator.tokens_issued
    texts = {**cluster.service_logs(), **{str(p): t for p, t in airflow.task_logs().items()}}
    for path in (postgres.log_path, redis.log_path):
        texts[str(path)] = path.read_text(errors="replace")
    texts["xcom"] = "\n".join(str(row) for row in postgres.query("SELECT dag_id, key, value FROM xcom"))
    texts["trigger"] = "\n".join(str(row) for row in postgres.query("SELECT kwargs FROM trigger"))
    leaks = [
        (name, secret[:4] + "...")
        for secret in secrets
        for form in _secret_forms(secret)
        for name, text in texts.items()
        if form in text
    ]
    assert not leaks, f"secrets found: {leaks}"
    with contextlib.suppress(OSError):
        (airflow.home / "figures.json").write_text(json.dumps(figures, indent=2))
