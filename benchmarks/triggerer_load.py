"""Triggerer load: N flow runs waited for concurrently in one event loop, ours vs. the http provider.

The triggerer runs every deferred task's trigger as a coroutine in one asyncio loop, so what
matters is what one waiting trigger costs that loop: CPU per poll, memory while waiting, token
requests, and how late it makes everything else (event-loop lag). This script runs N
``FlowServiceRunTrigger``s (rebuilt from their serialized kwargs, as the triggerer does) against
the emulator, each run finishing on its K-th poll at a fixed poll interval, and prints:

- IMS token requests of the whole client process (goal: 1),
- HTTP requests per run (goal: K) and polls per run,
- client CPU seconds per poll (``time.process_time`` of the client process only; the emulator
  runs in a separate process so its CPU is not counted),
- memory per waiting trigger: RSS growth / N, and Python-heap growth / N (tracemalloc, in a
  separate pass so that tracing does not distort the CPU figures),
- worst event-loop lag (a 10 ms ticker task measuring how late it wakes up; in a pass of its own,
  since waking the loop 100 times a second costs CPU that is not polling), split into the start-up
  phase (until the last trigger has been started) and the polling phase after it,
- wall time vs. the ideal K x interval (first polls spread over one interval, then K - 1 intervals).

The same workload then goes through what a DAG author would otherwise use: the http provider's
deferrable ``HttpSensorTrigger`` polling ``GET /runs/{id}`` with the same headers (a static
Bearer token). It cannot read a run status (it fires on the first non-404 answer), so it is
driven for K polls: each poll is one pass of its loop body (connection lookup, new aiohttp
session, GET). Goals: our CPU per poll at most half the baseline's; with 1000 waiting triggers
in one process, under 50 KB each and under 100 ms worst loop lag.

Both sides poll on the same schedule: our trigger spreads its first poll over one interval (by
run id) and then keeps a steady cadence, and the baseline's poll loops follow the same per-run
offsets (``--baseline-burst`` starts them all at once instead, as a triggerer restart would).
Polls spread out cost more CPU each than polls in one burst (each wakes a cold loop), so
comparing a spread side with a bursting one would not be fair.

Each measured pass runs in a fresh client process (clean token cache, allocator and RSS), which
creates its runs first and makes one warm-up poll through the same code on a run of its own (not
measured: one-time imports happen in a triggerer once, not per trigger; the token cache is then
emptied so the pass still fetches its one token), then waits for the signal to start.

``--floor`` adds a third pass: the same GETs and JSON parse on one kept-alive aiohttp session on
our triggers' schedule and nothing else, the floor under any trigger on this loop and HTTP stack.

``--gc-freeze`` calls ``gc.freeze()`` before the measured phase, so the full collections that
Python runs now and then no longer traverse Airflow's own heap (the triggerer does not do this;
the option shows how much of the lag is those collections: the lag pass prints the longest).

``--start-like-triggerer`` starts the triggers as Airflow's triggerer does instead of all in one
loop iteration: in batches of ``[triggerer] max_trigger_to_select_per_loop`` (Airflow 3.2+, default
50; before it, ``[triggerer] capacity``) about once a second (the supervisor assigns a batch per
loop, and the runner syncs with it once a second), each trigger created in a loop iteration of its
own (``TriggerRunner.create_triggers`` yields with ``asyncio.sleep(0)`` around each).

Usage: ``python benchmarks/triggerer_load.py [--n 100 1000] [--polls 5] [--interval 1]
[--quick] [--no-baseline] [--baseline-burst] [--floor] [--start-like-triggerer] [--gc-freeze]
[--no-tracemalloc] [--profile] [--repeat R]``

``--repeat R`` runs R timed passes of each implementation, interleaved (ours, baseline, floor, ours,
...): a pass's CPU per poll moves by a quarter or more from one pass to the next on a shared
virtual machine, the http provider's most, and one pass each can land on either side of the goal.
The verdict is then the median of the R rounds' own ratios; each implementation's row shows its
median pass.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

GOAL_CPU_RATIO = 0.5
GOAL_KB_PER_TRIGGER = 50.0
GOAL_LAG_MS = 100.0
RUNS_PATH = "/data/foundation/flowservice/runs"
OUR_CONN_ID = "flow_service_bench"
HTTP_CONN_ID = "http_bench"
TICK = 0.01
SAMPLE = 0.2


# ----------------------------------------------------------------------------------- emulator role
def _emulator_stats(emulator: Any) -> dict[str, int]:
    requests = list(emulator.requests)
    return {
        "token_requests": int(emulator.token_requests),
        "get_run": sum(1 for r in requests if r.method == "GET" and r.path.startswith(RUNS_PATH + "/")),
        "create_run": sum(1 for r in requests if r.method == "POST" and r.path == RUNS_PATH),
        "total": len(requests),
    }


def emulator_role(polls: int) -> int:
    """Serve the emulator in this process; answer ``stats`` / ``stop`` lines on stdin with JSON."""
    from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator

    # Poll K sees the outcome: the emulator's polls_to_finish counts the running polls before it.
    emulator = FlowServiceEmulator(polls_to_finish=polls - 1, max_recorded_requests=2_000_000)
    emulator.start()
    try:
        flow_id = emulator.add_flow(kind="file", polls_to_finish=polls - 1)
        port = int(emulator.url.rsplit(":", 1)[1])
        hello = {
            "url": emulator.url,
            "port": port,
            "flow_id": flow_id,
            # token_cache off: the client process fetches, and counts, its own IMS token
            "connection": emulator.connection_json(token_cache=False),
            "ims_token_url": emulator.ims_token_url,
            "client_id": emulator.client_id,
            "client_secret": emulator.client_secret,
            "org_id": emulator.org_id,
            "sandbox_name": emulator.sandbox_name,
        }
        print(json.dumps(hello), flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "stats":
                print(json.dumps(_emulator_stats(emulator)), flush=True)
            elif command == "stop":
                break
    finally:
        emulator.stop()
    return 0


# ------------------------------------------------------------------------------------- client role
class LoopWatch:
    """A ticker task: worst lateness of its sleeps (``tick`` 10 ms), and peaks of RSS and traced memory.

    A sleep that began before the last trigger was started counts to the start-up phase's lag, any
    other to the polling phase's.
    """

    def __init__(self, traced: bool, tick: float) -> None:
        import psutil

        self.process = psutil.Process()
        self.traced = traced
        self.tick = tick
        self.worst_lag = 0.0
        self.startup_lag = 0.0
        self.polling_lag = 0.0
        self.all_started: float | None = None
        self.rss_peak = self.process.memory_info().rss
        self.traced_peak = 0
        self.stopped = False
        self.gc_worst = 0.0
        """Longest garbage collection of the pass (it stops the loop like any other code)."""
        self._gc_began = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_began = time.perf_counter()
        else:
            self.gc_worst = max(self.gc_worst, time.perf_counter() - self._gc_began)

    async def run(self) -> None:
        import tracemalloc

        loop = asyncio.get_running_loop()
        last_sample = 0.0
        while not self.stopped:
            before = loop.time()
            await asyncio.sleep(self.tick)
            now = loop.time()
            lag = now - before - self.tick
            self.worst_lag = max(self.worst_lag, lag)
            if self.all_started is None or before < self.all_started:
                self.startup_lag = max(self.startup_lag, lag)
            else:
                self.polling_lag = max(self.polling_lag, lag)
            if now - last_sample >= SAMPLE:
                last_sample = now
                self.rss_peak = max(self.rss_peak, self.process.memory_info().rss)
                if self.traced:
                    self.traced_peak = max(self.traced_peak, tracemalloc.get_traced_memory()[0])


async def _create_runs(hello: dict[str, Any], headers: dict[str, str], n: int) -> list[str]:
    """Create ``n`` runs over HTTP (setup, not measured), 20 at a time."""
    import httpx

    body_template = {"flowId": hello["flow_id"], "params": {"windowStartTime": "", "windowEndTime": ""}}
    limit = asyncio.Semaphore(20)
    post_headers = {**headers, "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=hello["url"], timeout=60) as client:

        async def one(i: int) -> str:
            start = 1_735_689_600 + 3600 * i
            params = {"windowStartTime": str(start), "windowEndTime": str(start + 3600)}
            body = {**body_template, "params": params}
            async with limit:
                response = await client.post(RUNS_PATH, json=body, headers=post_headers)
            response.raise_for_status()
            data = response.json()
            item = data["items"][0] if "items" in data else data
            return str(item["id"])

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def _offsets(run_ids: list[str], interval: float) -> list[float]:
    """Each run's first-poll offset within the interval: the one our trigger uses for it."""
    from airflow_provider_flowservice.triggers.flow_service import FlowServiceRunTrigger

    return [FlowServiceRunTrigger(r, poll_interval=interval)._first_poll_delay() for r in run_ids]


def _ours(
    hello: dict[str, Any], run_ids: list[str], interval: float, deadline: float | None = None
) -> list[Callable[[], Awaitable[bool]]]:
    from airflow_provider_flowservice.triggers.flow_service import FlowServiceRunTrigger

    deadline = deadline if deadline is not None else time.time() + 3600
    serialized = [
        FlowServiceRunTrigger(
            # no flow_id: every trigger polls its own run, as before coalescing (goal 1 is "as today";
            # benchmarks/coalesced_polls.py measures the shared list)
            run_id, flow_service_conn_id=OUR_CONN_ID, poll_interval=interval, end_time=deadline,
        ).serialize()
        for run_id in run_ids
    ]

    def waiter(kwargs: dict[str, Any]) -> Callable[[], Awaitable[bool]]:
        async def wait() -> bool:
            trigger = FlowServiceRunTrigger(**kwargs)  # as the triggerer: rebuilt from its kwargs
            async for event in trigger.run():
                payload = event.payload
                return bool(payload["status"] == "terminal" and payload["run_status"] == "success")
            return False

        return wait

    return [waiter(kwargs) for _, kwargs in serialized]


def _baseline(
    run_ids: list[str], interval: float, polls: int, headers: dict[str, str], offsets: list[float]
) -> list[Callable[[], Awaitable[bool]]]:
    from airflow.providers.http.triggers.http import HttpSensorTrigger

    def waiter(run_id: str, offset: float) -> Callable[[], Awaitable[bool]]:
        async def wait() -> bool:
            trigger = HttpSensorTrigger(
                endpoint=f"{RUNS_PATH.lstrip('/')}/{run_id}", http_conn_id=HTTP_CONN_ID,
                headers=headers, poke_interval=interval,
            )
            loop = asyncio.get_running_loop()
            next_poll = loop.time() + offset
            for _ in range(polls):
                await asyncio.sleep(max(0.0, next_poll - loop.time()))
                events: Any = trigger.run()  # an async generator
                try:
                    event = await events.__anext__()  # one pass of its loop: one GET
                finally:
                    await events.aclose()
                if event.payload is not True:
                    return False
                next_poll += interval
            return True

        return wait

    return [waiter(run_id, offset) for run_id, offset in zip(run_ids, offsets, strict=True)]


def triggerer_batch() -> int:
    """How many new triggers Airflow's triggerer starts per loop (about one a second)."""
    from airflow.configuration import conf

    capacity = conf.getint("triggerer", "capacity", fallback=1000)
    per_loop = conf.getint("triggerer", "max_trigger_to_select_per_loop", fallback=capacity)
    return max(1, min(per_loop, capacity))


async def start_all(
    waiters: list[Callable[[], Awaitable[bool]]], watch: LoopWatch, like_triggerer: bool
) -> list[Any]:
    """Run every waiter: all in one loop iteration, or in batches as Airflow's triggerer starts them.

    Like ``TriggerRunner.create_triggers`` (Airflow 3.3): ``asyncio.sleep(0)`` before and after
    each trigger is made, one task per trigger; the next batch about a second later (its loop's
    ``move_on_after(1)`` between two syncs with the supervisor, which assigns one batch per loop).
    """
    loop = asyncio.get_running_loop()
    started = 0

    def counted(waiter: Callable[[], Awaitable[bool]]) -> Callable[[], Awaitable[bool]]:
        async def run() -> bool:
            nonlocal started
            started += 1
            if started == len(waiters):
                watch.all_started = loop.time()
            return await waiter()

        return run

    if not like_triggerer:
        return await asyncio.gather(*(counted(w)() for w in waiters), return_exceptions=True)
    batch = triggerer_batch()
    tasks: list[asyncio.Task[bool]] = []
    for first in range(0, len(waiters), batch):
        if first:
            await asyncio.sleep(1.0)
        for waiter in waiters[first : first + batch]:
            await asyncio.sleep(0)
            await asyncio.sleep(0)  # "loading the trigger class could have been expensive"
            tasks.append(asyncio.create_task(counted(waiter)()))
        await asyncio.sleep(0)
    return await asyncio.gather(*tasks, return_exceptions=True)


def _floor(
    hello: dict[str, Any], run_ids: list[str], interval: float, polls: int, headers: dict[str, str],
    offsets: list[float],
) -> list[Callable[[], Awaitable[bool]]]:
    """The floor under both: K GETs + JSON parse per run on one kept-alive aiohttp session, same schedule."""
    import aiohttp

    state: dict[str, aiohttp.ClientSession] = {}

    def waiter(run_id: str, offset: float) -> Callable[[], Awaitable[bool]]:
        async def wait() -> bool:
            session = state.get("session")
            if session is None:
                session = state["session"] = aiohttp.ClientSession()
            loop = asyncio.get_running_loop()
            next_poll = loop.time() + offset
            for _ in range(polls):
                await asyncio.sleep(max(0.0, next_poll - loop.time()))
                async with session.get(f"{hello['url']}{RUNS_PATH}/{run_id}", headers=headers) as resp:
                    data = json.loads(await resp.read())
                if resp.status != 200 or not data.get("items"):
                    return False
                next_poll += interval
            return True

        return wait

    return [waiter(run_id, offset) for run_id, offset in zip(run_ids, offsets, strict=True)]


def _warm_up(args: argparse.Namespace, hello: dict[str, Any], run_id: str, headers: dict[str, str]) -> None:
    """One poll through the measured code on a run of its own, so one-time imports are not counted."""
    if args.impl == "ours":
        (wait,) = _ours(hello, [run_id], args.interval, deadline=time.time() - 1)  # past: one last look
        asyncio.run(wait())
        from airflow_provider_flowservice._auth import TOKEN_CACHE

        TOKEN_CACHE.clear()  # the measured pass fetches its own token
    elif args.impl == "floor":
        (wait,) = _floor(hello, [run_id], args.interval, 1, headers, [0.0])
        asyncio.run(wait())
    else:
        (wait,) = _baseline([run_id], args.interval, 1, headers, [0.0])
        asyncio.run(wait())


def _read_line(stream: IO[str], timeout: float, what: str) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise TimeoutError(f"no {what} within {timeout:.0f}s")
    line = stream.readline()
    if not line:
        raise EOFError(f"stream closed while waiting for {what}")
    return line


def client_role(args: argparse.Namespace) -> int:
    """One measured pass: set up runs, wait for GO on stdin, run the waiters, print RESULT JSON."""
    import tracemalloc

    # stdout carries only the protocol lines: anything else written to it (log lines of the warm-up
    # poll) could share a read with READY, which _read_line's select would then wait past.
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    # Connection details (the emulator's client secret, a token) come on stdin, never on the
    # command line, where any user of the machine could read them.
    given = json.loads(_read_line(sys.stdin, 120, "connection details"))
    hello, token = given["hello"], given["token"]
    os.environ[f"AIRFLOW_CONN_{OUR_CONN_ID.upper()}"] = hello["connection"]
    os.environ[f"AIRFLOW_CONN_{HTTP_CONN_ID.upper()}"] = json.dumps(
        {"conn_type": "http", "host": "127.0.0.1", "port": hello["port"], "schema": "http"}
    )
    headers = {
        "Authorization": f"Bearer {token}",
        "x-api-key": hello["client_id"],
        "x-gw-ims-org-id": hello["org_id"],
        "x-sandbox-name": hello["sandbox_name"],
    }
    *run_ids, warm_up_run = asyncio.run(_create_runs(hello, headers, args.n + 1))
    _warm_up(args, hello, warm_up_run, headers)
    if args.impl == "ours":
        waiters = _ours(hello, run_ids, args.interval)
    elif args.impl == "floor":
        waiters = _floor(hello, run_ids, args.interval, args.polls, headers, _offsets(run_ids, args.interval))
    else:
        burst = args.baseline_burst
        offsets = [0.0] * len(run_ids) if burst else _offsets(run_ids, args.interval)
        waiters = _baseline(run_ids, args.interval, args.polls, headers, offsets)

    print("READY", file=proto, flush=True)
    _read_line(sys.stdin, 120, "GO")

    async def phase() -> tuple[list[bool], LoopWatch]:
        watch = LoopWatch(traced=args.tracemalloc, tick=TICK if args.lag else SAMPLE)
        ticker = asyncio.create_task(watch.run())
        await asyncio.sleep(0.05)  # let the ticker take its first sample
        results = await start_all(waiters, watch, args.start_like_triggerer)
        watch.stopped = True
        await ticker
        return [r is True for r in results], watch

    began = time.perf_counter()
    gc.collect()  # timed: the floor of any full collection during the pass (Airflow's heap, the runs)
    gc_before = time.perf_counter() - began
    if args.gc_freeze:
        gc.freeze()  # what is alive now (Airflow, the runs, the triggers) is never traversed again
    import psutil

    rss0 = psutil.Process().memory_info().rss
    if args.tracemalloc:
        tracemalloc.start()
    traced0 = tracemalloc.get_traced_memory()[0] if args.tracemalloc else 0
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile(time.thread_time)  # CPU, not wall: waits and preemption excluded
        profiler.enable()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    ok, watch = asyncio.run(phase())
    cpu1, wall1 = time.process_time(), time.perf_counter()
    if profiler is not None:
        profiler.disable()
    result = {
        "impl": args.impl,
        "n": args.n,
        "ok": sum(ok),
        "cpu": cpu1 - cpu0,
        "wall": wall1 - wall0,
        "lag": watch.worst_lag if args.lag else None,
        "startup_lag": watch.startup_lag if args.lag else None,
        "polling_lag": watch.polling_lag if args.lag else None,
        "gc_worst": watch.gc_worst,
        "gc_before": gc_before,
        "rss_delta": watch.rss_peak - rss0,
        "traced_delta": (watch.traced_peak - traced0) if args.tracemalloc else None,
    }
    print("RESULT " + json.dumps(result), file=proto, flush=True)
    if profiler is not None:
        import io
        import pstats

        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(15)
        ours_or_http = r"airflow_provider_flowservice|aiohttp|yarl|multidict"
        stats.sort_stats("cumulative").print_stats(ours_or_http, 25)
        print("PROFILE " + json.dumps(out.getvalue()), file=proto, flush=True)
    return 0


# ------------------------------------------------------------------------------------- orchestrator
class Emulator:
    """The emulator subprocess and its stats channel."""

    def __init__(self, polls: int, log: IO[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "_emulator", "--polls", str(polls)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
        )
        assert self.proc.stdout is not None
        self.hello: dict[str, Any] = json.loads(_read_line(self.proc.stdout, 120, "emulator start-up"))

    def stats(self) -> dict[str, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return dict(json.loads(_read_line(self.proc.stdout, 60, "emulator stats")))

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.write("stop\n")
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def _static_token(hello: dict[str, Any]) -> str:
    """What a DAG author pastes into HttpSensor headers: one token fetched up front."""
    import httpx

    form = {
        "grant_type": "client_credentials",
        "client_id": hello["client_id"],
        "client_secret": hello["client_secret"],
        "scope": "openid,AdobeID",
    }
    response = httpx.post(hello["ims_token_url"], data=form, timeout=30)
    response.raise_for_status()
    return str(response.json()["access_token"])


def run_pass(
    emulator: Emulator,
    token: str,
    impl: str,
    n: int,
    args: argparse.Namespace,
    *,
    lagged: bool = False,
    traced: bool = False,
    profiled: bool = False,
    log: IO[str],
) -> dict[str, Any]:
    """One measured pass in a fresh client process; emulator counters are diffed around it."""
    command = [
        sys.executable, __file__, "_client", "--impl", impl, "--n", str(n), "--polls", str(args.polls),
        "--interval", str(args.interval),
    ]
    if lagged:
        command.append("--lag")
    if traced:
        command.append("--tracemalloc")
    if profiled:
        command.append("--profile")
    if args.baseline_burst:
        command.append("--baseline-burst")
    if args.start_like_triggerer:
        command.append("--start-like-triggerer")
    if args.gc_freeze:
        command.append("--gc-freeze")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(json.dumps({"hello": emulator.hello, "token": token}) + "\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 240
        while not _read_line(proc.stdout, max(1.0, deadline - time.monotonic()), "client READY").startswith(
            "READY"
        ):
            pass
        before = emulator.stats()
        proc.stdin.write("GO\n")
        proc.stdin.flush()
        budget = 60 + 10 * args.polls * args.interval + n * 0.1
        if args.start_like_triggerer:
            budget += 2 * n / triggerer_batch()  # a batch about every second
        deadline = time.monotonic() + budget
        result: dict[str, Any] | None = None
        profile = None
        while True:
            line = _read_line(proc.stdout, max(1.0, deadline - time.monotonic()), f"{impl} result")
            if line.startswith("RESULT "):
                result = json.loads(line[len("RESULT ") :])
                if not profiled:
                    break
            elif line.startswith("PROFILE "):
                profile = json.loads(line[len("PROFILE ") :])
                break
        after = emulator.stats()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert result is not None
    result.update({k: after[k] - before[k] for k in ("token_requests", "get_run", "total")})
    result["profile"] = profile
    return result


def _cpu_per_poll(r: dict[str, Any]) -> float:
    return float(r["cpu"]) / max(1, r["get_run"])


def measure_all(
    emulator: Emulator, token: str, impls: list[str], n: int, args: argparse.Namespace, log: IO[str]
) -> dict[tuple[int, str], dict[str, Any]]:
    """``--repeat`` timed passes per implementation, interleaved (ours, baseline, floor, ours, ...),
    so that each round's passes share the machine's conditions; then the other passes of each.

    Each implementation's figures are those of its median timed pass; ``cpu_per_poll_all`` keeps
    every round's, in order, for the paired ratios.
    """
    timed: dict[str, list[dict[str, Any]]] = {impl: [] for impl in impls}
    for _ in range(args.repeat):
        for impl in impls:
            timed[impl].append(run_pass(emulator, token, impl, n, args, log=log))
    results = {}
    for impl in impls:
        passes = sorted(timed[impl], key=_cpu_per_poll)
        result = dict(passes[(len(passes) - 1) // 2])
        result["cpu_per_poll_all"] = [_cpu_per_poll(r) for r in timed[impl]]
        result["ok"] = min(r["ok"] for r in passes)
        results[(n, impl)] = measure(emulator, token, impl, n, args, log, result)
    return results


def measure(
    emulator: Emulator, token: str, impl: str, n: int, args: argparse.Namespace, log: IO[str],
    result: dict[str, Any],
) -> dict[str, Any]:
    """After the timed ``result``: the lag pass, a tracemalloc pass and a cProfile pass when asked.

    Each of them would distort the CPU figures of the timed pass.
    """
    lagged = run_pass(emulator, token, impl, n, args, lagged=True, log=log)
    result["lag"], result["ok"] = lagged["lag"], min(result["ok"], lagged["ok"])
    result["startup_lag"], result["polling_lag"] = lagged["startup_lag"], lagged["polling_lag"]
    result["gc_worst"], result["gc_before"] = lagged.get("gc_worst"), lagged.get("gc_before")
    if not args.no_tracemalloc:
        traced = run_pass(emulator, token, impl, n, args, traced=True, log=log)
        result["traced_kb"] = traced["traced_delta"] / n / 1024
    if args.profile:
        result["profile"] = run_pass(emulator, token, impl, n, args, profiled=True, log=log)["profile"]
    return result


def _row(label: str, r: dict[str, Any], args: argparse.Namespace) -> str:
    n = r["n"]
    cpu_per_poll_ms = _cpu_per_poll(r) * 1000
    rss_kb = r["rss_delta"] / n / 1024
    traced = r.get("traced_kb")
    traced_txt = f"{traced:8.1f}" if traced is not None else "       -"
    ideal = args.polls * args.interval
    if args.start_like_triggerer:
        ideal += math.ceil(n / triggerer_batch()) - 1  # the last batch starts that much later
    return (
        f"{n:>5} {label:<9} {r['ok']:>5} {r['token_requests']:>6} {r['get_run'] / n:>9.2f} "
        f"{r['total'] / n:>8.2f} {r['cpu']:>7.2f} {cpu_per_poll_ms:>9.3f} {r['lag'] * 1000:>8.1f} "
        f"{r['startup_lag'] * 1000:>9.1f} {r['polling_lag'] * 1000:>8.1f} "
        f"{rss_kb:>8.1f} {traced_txt} {r['wall']:>7.2f} {ideal:>6.1f}"
    )


HEADER = (
    "    N impl         ok tokens polls/run req/run  CPU s  ms CPU/poll  lag ms  start-up  polling"
    "  RSS KB/t  heap KB/t"
    "  wall s  ideal"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", nargs="?", default="main", choices=["main", "_emulator", "_client"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000], help="concurrent runs per pass")
    parser.add_argument("--polls", type=int, default=5, help="K: polls until a run finishes")
    parser.add_argument("--interval", type=float, default=1.0, help="poll interval in seconds")
    parser.add_argument("--quick", action="store_true", help="N=50, K=3, no tracemalloc pass (smoke test)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the HttpSensorTrigger baseline")
    parser.add_argument("--baseline-burst", action="store_true",
                        help="start all baseline poll loops at once (default: on our triggers' schedule)")
    parser.add_argument("--start-like-triggerer", action="store_true",
                        help="start the triggers in batches as Airflow's triggerer does (default: at once)")
    parser.add_argument("--gc-freeze", action="store_true",
                        help="gc.freeze() before the measured phase (Airflow's triggerer does not)")
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the heap-measuring passes")
    parser.add_argument("--profile", action="store_true", help="add a cProfiled pass per N and impl")
    parser.add_argument("--repeat", type=int, default=1,
                        help="timed passes per N and impl, interleaved; the ratio is the median of "
                        "each round's (default 1)")
    # client role only
    parser.add_argument("--floor", action="store_true",
                        help="add a pass of bare aiohttp GETs on one session, same schedule (the floor)")
    parser.add_argument("--impl", choices=["ours", "baseline", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--tracemalloc", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lag", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.role == "_emulator":
        return emulator_role(args.polls)
    if args.role == "_client":
        args.n = args.n[0]
        return client_role(args)

    if args.quick:
        args.n, args.polls, args.no_tracemalloc = [50], 3, True
    if args.polls < 1 or args.interval <= 0 or min(args.n) < 1 or args.repeat < 1:
        parser.error("--polls and --repeat must be >= 1, --interval > 0 and every --n >= 1")
    impls = ["ours"] if args.no_baseline else ["ours", "baseline"]
    if args.floor:
        impls.append("floor")

    with tempfile.TemporaryDirectory(prefix="triggerer-load-") as tmp:
        log_path = Path(tmp) / "subprocesses.log"
        with open(log_path, "w") as log:
            emulator = Emulator(args.polls, log)
            try:
                token = _static_token(emulator.hello)
                results = {}
                for n in args.n:
                    results.update(measure_all(emulator, token, impls, n, args, log))
            except BaseException:
                log.flush()
                print(log_path.read_text()[-4000:], file=sys.stderr)
                raise
            finally:
                emulator.stop()

    import airflow

    started = "at once"
    if args.start_like_triggerer:
        started = f"{triggerer_batch()} a second, as Airflow's triggerer"
    print(f"Triggerer load (Airflow {airflow.__version__}, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs): K={args.polls} polls per run, {args.interval:g} s interval, "
          "emulator in a separate process, triggers started "
          f"{started}")
    print(HEADER)
    for (_, impl), r in results.items():
        print(_row(impl, r, args))
    print("columns: ok = runs seen to the end; tokens = IMS token requests by the client process; "
          "lag = worst event-loop lateness, then split: while the triggers were being started, and "
          "while they polled after that; RSS/heap KB/t = memory growth per waiting trigger; "
          "ideal = K x interval (first polls spread over one interval), plus a second a batch with "
          "--start-like-triggerer")
    failures = _verdicts(results, args)
    for (n, impl), r in results.items():
        if r.get("profile"):
            title = f"cProfile, {impl}, N={n} (main thread; own time, then cumulative)"
            print(f"\n--- {title} ---\n{r['profile']}")
    return 1 if failures else 0


def _verdicts(results: dict[tuple[int, str], dict[str, Any]], args: argparse.Namespace) -> int:
    """Print each goal's figure and verdict; return how many runs did not finish (an error)."""
    not_finished = 0
    for n in args.n:
        ours = results[(n, "ours")]
        not_finished += n - ours["ok"]
        per_run = ours["total"] / n
        # expected values, not issue 13's goals (whose numbers these once looked like)
        print(f"N={n}: ours: token requests {ours['token_requests']} (expected 1: "
              f"{'OK' if ours['token_requests'] == 1 else 'MISSED'}), HTTP requests per run {per_run:.2f} "
              f"(expected K = {args.polls}: {'OK' if abs(per_run - args.polls) < 0.05 else 'MISSED'})")
        if (n, "baseline") in results:
            base = results[(n, "baseline")]
            not_finished += n - base["ok"]
            ours_cpp = _cpu_per_poll(ours)
            base_cpp = _cpu_per_poll(base)
            ratio = ours_cpp / base_cpp if base_cpp else float("nan")
            rounds = ""
            if len(ours["cpu_per_poll_all"]) > 1:  # the median of the rounds' own (paired) ratios
                pairs = zip(ours["cpu_per_poll_all"], base["cpu_per_poll_all"], strict=True)
                paired = [o / b for o, b in pairs]
                ratio = statistics.median(paired)
                rounds = f"; each round: {' '.join(f'{r:.2f}' for r in paired)}; median"
            print(f"N={n}: CPU per poll ours/baseline = {ours_cpp * 1000:.3f} / {base_cpp * 1000:.3f} ms"
                  f"{rounds} = {ratio:.2f} "
                  f"(goal <= {GOAL_CPU_RATIO}: {'OK' if ratio <= GOAL_CPU_RATIO else 'MISSED'})")
        if (n, "floor") in results:
            floor = results[(n, "floor")]
            floor_cpp = _cpu_per_poll(floor)
            above = _cpu_per_poll(ours) - floor_cpp
            versus = ""
            if (n, "baseline") in results:
                base = results[(n, "baseline")]
                versus = f"; floor/baseline = {floor_cpp / _cpu_per_poll(base):.2f}"
            print(f"N={n}: CPU per poll of bare aiohttp GETs on one session (the floor) = "
                  f"{floor_cpp * 1000:.3f} ms; ours above it {above * 1000:.3f} ms{versus}")
        if n >= 1000:
            rss_kb = ours["rss_delta"] / n / 1024
            heap_kb = ours.get("traced_kb")
            worst_kb = max(rss_kb, heap_kb or 0.0)
            lag_ms = ours["lag"] * 1000
            startup, polling, pause = (ours[k] * 1000 for k in ("startup_lag", "polling_lag", "gc_worst"))
            before = ours.get("gc_before")
            floor = "" if before is None else (
                f"; a full collection before any trigger started (Airflow's heap and the runs): "
                f"{before * 1000:.1f} ms")
            split = (f"start-up {startup:.1f} ms, polling {polling:.1f} ms, longest GC pause {pause:.1f} ms"
                     f"{floor}")
            print(f"N={n}: ours: memory per waiting trigger {worst_kb:.1f} KB (RSS {rss_kb:.1f}, heap "
                  f"{'-' if heap_kb is None else f'{heap_kb:.1f}'}; goal < {GOAL_KB_PER_TRIGGER:.0f}: "
                  f"{'OK' if worst_kb < GOAL_KB_PER_TRIGGER else 'MISSED'}), worst loop lag {lag_ms:.1f} ms "
                  f"({split}; goal < {GOAL_LAG_MS:.0f}: {'OK' if lag_ms < GOAL_LAG_MS else 'MISSED'})")
    return not_finished


if __name__ == "__main__":
    sys.exit(main())
