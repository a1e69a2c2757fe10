"""Soak test: many flow runs created and waited on concurrently while the API misbehaves.

Each of ``--runs`` windows goes through what Airflow does with a deferrable
``FlowServiceCreateRunOperator``: ``execute()`` in a worker thread (validation, look-up, create
through the hook), the trigger's wait in one shared event loop (as in a triggerer), then
``execute_complete()``. A try that fails is retried once like a task with ``retries=1`` (the
operator's reuse rule must then reattach instead of creating again). Meanwhile the emulator
gives each Flow Service request a random fault with probability ``--fault-rate`` (429, 5xx,
dropped connection, dropped after creating the run, reset, slow answer past the read timeout)
and all access tokens are revoked once the first requests are made, then every ``--revoke-every``
seconds.

At the end it prints the runs requested, the runs that reached a terminal state, lost runs,
duplicated runs (more than one run in the emulator for one window), leaked secrets (the client
secret or any issued token found in the captured logs at DEBUG, stdout/stderr, XComs, trigger
kwargs, events or error messages), requests sent per run and the total time. Exit status 1 when
anything was lost, duplicated or leaked.

    python benchmarks/soak.py --runs 200 --fault-rate 0.1 --seed 1 --concurrency 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

if __name__ == "__main__":  # before Airflow is imported: log everything, keep Airflow's home private
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "DEBUG")
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="flowservice-soak-"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

FAULT_KINDS = (
    "429", "500", "502", "503", "504", "drop", "drop_after_create", "502_after_create", "504_after_create",
    "reset", "slow",
)
READ_TIMEOUT = 0.5
SLOW_DELAY = 0.6
"""A slow answer comes after the client's read timeout, but before it looks again (read timeout later)."""
WINDOWS_PER_FLOW = 25
FIRST_REVOCATION_AFTER = 20
"""Requests the emulator has seen when the first revocation comes."""
BASE = 1704067200  # 2024-01-01T00:00:00Z


@dataclass
class SoakResult:
    """What one soak run measured."""

    runs: int
    fault_rate: float
    seed: int
    concurrency: int
    terminal: int = 0
    lost: int = 0
    duplicated: int = 0
    leaked: int = 0
    task_retries: int = 0
    revocations: int = 0
    ims_requests: int = 0
    flow_service_requests: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    scanned_bytes: int = 0
    seconds: float = 0.0
    timed_out: bool = False
    failures: list[str] = field(default_factory=list)
    retry_causes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.leaked == 0 and not self.timed_out

    def report(self) -> str:
        per_run = self.flow_service_requests / self.runs if self.runs else 0.0
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        lines = [
            f"Soak: {self.runs} runs, fault rate {self.fault_rate:g}, seed {self.seed}, "
            f"concurrency {self.concurrency}",
            f"  runs requested:          {self.runs}",
            f"  reached terminal state:  {self.terminal}",
            f"  lost:                    {self.lost}",
            f"  duplicated (windows):    {self.duplicated}",
            f"  leaked secrets:          {self.leaked}  (searched {self.scanned_bytes / 1e6:.1f} MB: logs at "
            "DEBUG, stdout/stderr, XComs, trigger kwargs, events, errors)",
            f"  task retries:            {self.task_retries}",
            f"  faults injected:         {sum(self.faults.values())} ({faults})",
            f"  token revocations:       {self.revocations}  (IMS token requests: {self.ims_requests})",
            f"  requests per run:        {per_run:.1f} to Flow Service ({self.flow_service_requests} in all)",
            f"  total time:              {self.seconds:.1f} s"
            + ("  (TIME LIMIT HIT)" if self.timed_out else ""),
        ]
        lines += [f"  retried after: {c}" for c in self.retry_causes[:10]]
        lines += [f"  failure: {f}" for f in self.failures[:10]]
        return "\n".join(lines)


class _TI:
    """The task-instance attributes the operator reads and writes."""

    def __init__(self, try_number: int) -> None:
        from datetime import UTC, datetime

        self.try_number = try_number
        self.max_tries = 1  # retries=1
        self.start_date = datetime.now(UTC)
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


@contextlib.contextmanager
def _captured(sink: list[str]) -> Iterator[None]:
    """Everything written to fds 1 and 2 plus every log record (DEBUG, before any masking) -> sink."""
    records = io.StringIO()
    handler = logging.StreamHandler(records)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            root.removeHandler(handler)
            root.setLevel(old_level)
            out.seek(0)
            sink.append(out.read().decode("utf-8", "replace"))
            sink.append(records.getvalue())


def _worker_thread_init() -> None:
    """Airflow 2's ``ExecutorSafeguard`` keeps a thread-local set up only in the importing thread;
    give each worker thread its own, as Airflow's task runner thread has."""
    try:
        from airflow.models.baseoperator import ExecutorSafeguard
    except ImportError:  # Airflow 3: no such guard
        return
    sentinel = getattr(ExecutorSafeguard, "_sentinel", None)
    if sentinel is not None and not hasattr(sentinel, "callers"):
        sentinel.callers = {}


def _warm_up_first_use() -> None:
    """Do once, in this thread, what Airflow 2 does lazily on first use.

    On its first ``execute()`` Airflow 2 imports ``airflow.decorators.base``, and on its first
    ``Connection`` it configures the ORM mappers, which imports every model. Done by several
    worker threads at once, the two deadlock on the import lock. A task runner has a single thread,
    so it never meets this; the soak's threads would.
    """
    from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook
    from airflow_provider_flowservice.version_compat import AIRFLOW_V_3_0_PLUS

    if not AIRFLOW_V_3_0_PLUS:
        import airflow.decorators.base  # noqa: F401
    FlowServiceHook().settings  # noqa: B018 -- reads the connection: builds a Connection


def _exception_text(exc: BaseException) -> str:
    import traceback

    return f"{exc}\n{exc!r}\n{vars(exc)!r}\n" + "".join(traceback.format_exception(exc))


async def _soak(
    emu: Any, runs: int, concurrency: int, poll_interval: float, revoke_every: float, sink: list[str],
    result: SoakResult, done: dict[tuple[str, int], str],
) -> None:
    """Drive every window through create -> defer -> trigger -> complete; ``done``: window -> run id."""
    from airflow_provider_flowservice._retry import RetryPolicy
    from airflow_provider_flowservice.operators.flow_service import FlowServiceCreateRunOperator
    from airflow_provider_flowservice.version_compat import AIRFLOW_V_3_0_PLUS

    if AIRFLOW_V_3_0_PLUS:
        from airflow.sdk.exceptions import TaskDeferred
    else:
        from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]

    policy = RetryPolicy(max_attempts=8, initial_backoff=0.02, max_backoff=0.2, max_total_seconds=30)
    flows = [emu.add_flow() for _ in range(max(1, -(-runs // WINDOWS_PER_FLOW)))]
    windows = [(flows[i % len(flows)], BASE + (i // len(flows)) * 3600) for i in range(runs)]
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int, flow: str, start: int) -> None:
        for try_number in (1, 2):
            op = FlowServiceCreateRunOperator(
                task_id=f"ingest_{index}", flow_id=flow, window_start=start, window_end=start + 3600,
                deferrable=True, poll_interval=poll_interval, timeout=120, retries=1, retry=policy,
            )
            ti = _TI(try_number)
            context: Any = {"ti": ti}
            try:
                try:
                    await loop.run_in_executor(pool, op.execute, context)
                    raise RuntimeError("execute() returned without deferring")
                except TaskDeferred as deferred:
                    sink.append(json.dumps(deferred.trigger.serialize(), default=str))
                    events = [e async for e in deferred.trigger.run()]
                    sink.append(json.dumps([e.payload for e in events], default=str))
                    run_id = getattr(op, deferred.method_name)(context, events[0].payload)
                sink.append(json.dumps(ti.xcoms, default=str))
                done[(flow, start)] = run_id
                return
            except Exception as exc:
                sink.append(_exception_text(exc))
                sink.append(json.dumps(ti.xcoms, default=str))
                if try_number == 1:
                    result.task_retries += 1
                    result.retry_causes.append(f"{type(exc).__name__}: {str(exc)[:300]}")
                else:
                    result.failures.append(f"window {flow}@{start}: {type(exc).__name__}: {str(exc)[:300]}")

    async def gated(index: int, flow: str, start: int) -> None:
        async with gate:
            await one(index, flow, start)

    async def revoker() -> None:
        # The first revocation as soon as requests flow (an idle machine can finish a short soak in
        # less than one revoke_every), then one every revoke_every seconds.
        while revoke_every > 0 and len(emu.requests) < FIRST_REVOCATION_AFTER:
            await asyncio.sleep(0.01)
        while revoke_every > 0:
            emu.revoke_tokens()
            result.revocations += 1
            await asyncio.sleep(revoke_every)

    with ThreadPoolExecutor(
        max_workers=concurrency, thread_name_prefix="soak-worker", initializer=_worker_thread_init
    ) as pool:
        revoking = asyncio.ensure_future(revoker())
        try:
            await asyncio.gather(*(gated(i, f, s) for i, (f, s) in enumerate(windows)))
        finally:
            revoking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await revoking


def run_soak(
    runs: int = 200,
    fault_rate: float = 0.1,
    seed: int = 1,
    concurrency: int = 20,
    *,
    max_seconds: float = 600.0,
    poll_interval: float = 0.05,
    revoke_every: float = 1.0,
    plant_leak: bool = False,
) -> SoakResult:
    """Run the soak against a fresh emulator and return the figures (nothing is printed).

    Everything from the imports to the emulator's shutdown runs under the capture, so whatever
    any of it writes is searched for secrets. ``plant_leak`` logs one issued token at DEBUG: a
    self-check that the search finds what it looks for.
    """
    secret = f"soak-s3cr3t-{uuid.uuid4()}"
    result = SoakResult(runs=runs, fault_rate=fault_rate, seed=seed, concurrency=concurrency)
    sink: list[str] = []
    done: dict[tuple[str, int], str] = {}
    previous_conn = os.environ.get("AIRFLOW_CONN_FLOW_SERVICE_DEFAULT")
    with _captured(sink):
        from airflow_provider_flowservice._auth import TOKEN_CACHE
        from airflow_provider_flowservice.operators.flow_service import FlowServiceCreateRunOperator  # noqa: F401
        from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator

        started = time.monotonic()  # Airflow's import time is not the soak's

        TOKEN_CACHE.clear()
        emu = FlowServiceEmulator(client_secret=secret, polls_to_finish=2, page_size=50)
        with emu:
            os.environ["AIRFLOW_CONN_FLOW_SERVICE_DEFAULT"] = emu.connection_json(
                read_timeout=READ_TIMEOUT, connect_timeout=2
            )
            _warm_up_first_use()
            kinds = FAULT_KINDS if fault_rate > 0 else ()
            emu.set_random_faults(fault_rate, kinds, seed=seed, delay=SLOW_DELAY)
            try:
                coroutine = _soak(emu, runs, concurrency, poll_interval, revoke_every, sink, result, done)
                asyncio.run(asyncio.wait_for(coroutine, max_seconds))
            except TimeoutError:
                result.timed_out = True
            finally:
                if plant_leak and emu.tokens_issued:
                    logging.getLogger("soak.self_check").debug("planted %s", emu.tokens_issued[-1])
                emu.set_random_faults(0, [])
                if previous_conn is None:
                    os.environ.pop("AIRFLOW_CONN_FLOW_SERVICE_DEFAULT", None)
                else:
                    os.environ["AIRFLOW_CONN_FLOW_SERVICE_DEFAULT"] = previous_conn
                TOKEN_CACHE.clear()
    result.seconds = time.monotonic() - started

    finished = {"success", "failed", "partialsuccess"}
    for run_id in done.values():
        run = emu.runs.get(run_id, {})
        status = str(run.get("metrics", {}).get("statusSummary", {}).get("status", "")).lower()
        if status in finished:
            result.terminal += 1
    result.lost = runs - result.terminal
    per_window = Counter((run["flowId"], int(run["params"]["windowStartTime"])) for run in emu.runs.values())
    result.duplicated = sum(1 for count in per_window.values() if count > 1)
    needles = [secret, *emu.tokens_issued]
    text = "\n".join(sink)
    result.scanned_bytes = len(text.encode())
    result.leaked = sum(1 for needle in needles if needle in text)
    result.ims_requests = emu.token_requests
    result.flow_service_requests = sum(1 for r in emu.requests if r.path.startswith("/data/"))
    result.faults = dict(Counter(r.fault for r in emu.requests if r.fault))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run the soak, print the figures, exit 1 if anything was lost, duplicated or leaked."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="flow runs (windows) to drive (default 200)")
    parser.add_argument("--fault-rate", type=float, default=0.1, help="chance of a fault per request (0.1)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault sequence (1)")
    parser.add_argument("--concurrency", type=int, default=20, help="runs in flight at once (20)")
    parser.add_argument(
        "--revoke-every", type=float, default=1.0, help="revoke all tokens every N s (1; 0 = never)"
    )
    parser.add_argument("--max-seconds", type=float, default=600.0, help="time limit of the whole soak (600)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.concurrency < 1 or not 0 <= args.fault_rate <= 1:
        parser.error("--runs and --concurrency must be >= 1 and --fault-rate between 0 and 1")
    result = run_soak(
        args.runs, args.fault_rate, args.seed, args.concurrency,
        max_seconds=args.max_seconds, revoke_every=args.revoke_every,
    )
    logging.disable(logging.INFO)  # Airflow's debug chatter at exit is not part of the report
    print(result.report())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
