"""IMS token requests of N task processes and N reschedule pokes on one host, token file cache on vs off.

    .venv/bin/python benchmarks/token_requests.py            # N = 16
    .venv/bin/python benchmarks/token_requests.py --n 50
    .venv/bin/python benchmarks/token_requests.py --quick    # N = 3 (smoke)

The emulator (IMS + Flow Service) runs in this process. For each side, one worker process imports
Airflow and the provider once and then forks its task processes, as Airflow's executors do (each
child starts with an empty process-wide token cache):

- N task processes at once, each reading its own flow run with ``FlowServiceHook.get_run``;
- then N reschedule pokes one after the other, each a new process running
  ``FlowServiceRunSensor.poke`` on one run that is still running (each poke reschedules).

"on" is the default connection; "off" adds extra ``token_cache: false`` (the behaviour before the
cache). The counts are the emulator's IMS requests; the token lives 24 h, so the goal is at most 1
per side and lifetime, against N + N without the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

JAN1 = 1704067200
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def worker(tasks_json: str, poke_run: str, pokes: int) -> None:
    """Fork the task processes, then the pokes; exit non-zero if any child failed."""
    from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook
    from airflow_provider_flowservice.sensors.flow_service import FlowServiceRunSensor

    class _TI:  # what the sensor's poke reads from a task instance (it publishes the run's UI link)
        task_id, dag_id, run_id, try_number, map_index = "wait", "bench", "bench", 1, -1

        def xcom_push(self, key: str, value: object, **_: object) -> None:
            pass

    def in_child(work: object) -> int:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = 0 if work() is not False else 3  # type: ignore[operator]
            except BaseException:
                traceback.print_exc()
                sys.stderr.flush()
            finally:
                os._exit(code)
        return pid

    def task(run_id: str) -> object:
        return FlowServiceHook().get_run(run_id)

    def poke() -> bool:
        sensor = FlowServiceRunSensor(task_id="wait", run_id=poke_run, mode="reschedule")
        return sensor.poke({"ti": _TI()}) is False  # type: ignore[arg-type]  # still running: reschedule

    failed = 0
    pids = [in_child(lambda r=run_id: task(r)) for run_id in json.loads(tasks_json)]
    failed += sum(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0 for pid in pids)
    print("tasks-done", flush=True)
    sys.stdin.readline()  # the parent reads the count between the two phases
    for _ in range(pokes):
        pid = in_child(poke)
        failed += os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0
    sys.exit(1 if failed else 0)


def measure(n: int, cache_on: bool) -> tuple[int, int]:
    """IMS requests of (N task processes, N pokes) on a fresh emulator and cache directory."""
    from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook
    from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator

    with FlowServiceEmulator() as em, tempfile.TemporaryDirectory(prefix="bench-tokens-") as cache:
        flow = em.add_flow(kind="table")
        poke_flow = em.add_flow(kind="table", polls_to_finish=n + 10)  # running through all N pokes
        os.environ["AIRFLOW_CONN_BENCH_SETUP"] = em.connection_json(token_cache="false")
        setup = FlowServiceHook("bench_setup")
        runs = [setup.create_run(flow, JAN1 + 3600 * i, JAN1 + 3600 * (i + 1)).run_id for i in range(n)]
        poke_run = setup.create_run(poke_flow, JAN1, JAN1 + 3600).run_id
        before = em.token_requests  # the set-up's own
        extra = {} if cache_on else {"token_cache": "false"}
        env = {
            **os.environ,
            "AIRFLOW_CONN_FLOW_SERVICE_DEFAULT": em.connection_json(**extra),
            "FLOW_SERVICE_TOKEN_CACHE_DIR": cache,
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        }
        proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps(runs), poke_run, str(n)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None and proc.stdin is not None
            deadline = time.monotonic() + 600
            while (line := proc.stdout.readline()) and "tasks-done" not in line:
                if time.monotonic() > deadline:
                    raise TimeoutError("the task processes did not finish in 600 s")
            tasks = em.token_requests - before
            proc.stdin.write("\n")
            proc.stdin.flush()
            proc.wait(timeout=600)
            if proc.returncode != 0:
                raise SystemExit(f"a task or poke process failed (exit {proc.returncode})")
            return tasks, em.token_requests - before - tasks
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=16, help="task processes, and reschedule pokes (default 16)")
    parser.add_argument("--quick", action="store_true", help="N = 3 (smoke test)")
    args = parser.parse_args()
    n = 3 if args.quick else args.n
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-airflow-home-"))
    on, off = measure(n, cache_on=True), measure(n, cache_on=False)
    print(f"IMS token requests on one host, N = {n} (token lifetime 24 h, one emulator per side)")
    print(f"{'':34}{'cache on':>10}{'cache off':>11}")
    print(f"{f'{n} task processes at once':34}{on[0]:>10}{off[0]:>11}")
    print(f"{f'{n} reschedule pokes, one by one':34}{on[1]:>10}{off[1]:>11}")
    print(f"{'total':34}{sum(on):>10}{sum(off):>11}")
    print(f"goal: at most 1 per token lifetime with the cache -> {'met' if sum(on) <= 1 else 'MISSED'}")


if __name__ == "__main__":
    main()
