"""Where a trigger's poll goes: the same wait with one part swapped out at a time, in interleaved rounds.

N ``FlowServiceRunTrigger``s wait for N emulator runs that end on their K-th poll (one event loop,
the emulator in another process, as in ``triggerer_load.py``), in four variants:

- ``ours``: the trigger as shipped;
- ``silent``: the same with its logger silenced (what its log lines cost);
- ``bare-hook``: silenced, and its hook replaced by one ``GET`` on a shared kept-alive
  ``aiohttp.ClientSession`` + ``FlowRun.from_api`` (what our hook costs over aiohttp);
- ``floor``: no trigger at all, the same GETs on the same schedule (what the trigger around the
  request costs).

Each round runs every variant once, in order, on fresh runs; the script prints each variant's CPU
per poll (``time.process_time`` of this process) in every round and the median, and the
differences between neighbours. The rounds share the machine's conditions, so the differences are
the result; the absolute times are not.

Usage: ``python benchmarks/poll_breakdown.py [--n 100] [--interval 2] [--polls 3] [--rounds 6]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

FLOW_ID = "d8a68c3a-8f3e-4b8d-9f00-5c1d0a6e7a11"
VARIANTS = ("floor", "bare-hook", "silent", "ours")


class _Silent:
    """A logger that drops every line."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="triggers waiting at once")
    parser.add_argument("--interval", type=float, default=2.0, help="poll interval, seconds")
    parser.add_argument("--polls", type=int, default=3, help="K: polls until a run ends")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of the four variants")
    args = parser.parse_args(argv)
    if min(args.n, args.polls, args.rounds) < 1 or args.interval <= 0:
        parser.error("--n, --polls and --rounds must be >= 1, --interval > 0")
    os.environ["FLOW_SERVICE_MIN_POLL_INTERVAL"] = "0.01"  # allow short intervals for quick runs
    emulator = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_flowservice.testing", "--port", "0",
         "--polls-to-finish", str(args.polls - 1), "--flow", f"{FLOW_ID}:file"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert emulator.stdout is not None
        for line in emulator.stdout:  # the emulator prints the connection to use, then serves
            if "export AIRFLOW_CONN_FLOW_SERVICE_DEFAULT=" in line:
                conn = json.loads(line.split("=", 1)[1].strip().strip("'"))
                break
        else:
            raise RuntimeError("the emulator did not start")
        conn.setdefault("extra", {})["token_cache"] = False  # no token file: this process only
        os.environ["AIRFLOW_CONN_FLOW_SERVICE_DEFAULT"] = json.dumps(conn)
        results = _measure(args)
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
    print(f"CPU per poll (ms), N = {args.n}, {args.interval:g} s interval, K = {args.polls}, "
          f"{args.rounds} interleaved rounds; load average now {os.getloadavg()[0]:.2f}")
    medians = {}
    for variant in VARIANTS:
        medians[variant] = statistics.median(results[variant])
        rounds = " ".join(f"{x:.3f}" for x in results[variant])
        print(f"  {variant:<10} median {medians[variant]:.3f}   rounds {rounds}")
    parts = (
        ("the trigger around the request (bare-hook - floor)", "bare-hook", "floor"),
        ("our hook over a bare GET (silent - bare-hook)", "silent", "bare-hook"),
        ("the trigger's log lines (ours - silent)", "ours", "silent"),
    )
    for label, more, less in parts:
        print(f"  {label:<52} {medians[more] - medians[less]:+.3f}")
    return 0


def _measure(args: argparse.Namespace) -> dict[str, list[float]]:
    import aiohttp

    from airflow_provider_flowservice._auth import TOKEN_CACHE
    from airflow_provider_flowservice.hooks.flow_service import FlowServiceAsyncHook, FlowServiceHook
    from airflow_provider_flowservice.models import FlowRun
    from airflow_provider_flowservice.triggers.flow_service import FlowServiceRunTrigger

    sync_hook = FlowServiceHook()
    start = 1_735_689_600
    total = len(VARIANTS) * args.rounds * args.n + 1
    fresh = iter([sync_hook.create_run(FLOW_ID, start + 3600 * i, start + 3600 * (i + 1)).run_id
                  for i in range(total)])

    async def request_parts() -> tuple[dict[str, str], str]:
        hook = FlowServiceAsyncHook()
        state = await hook._conn()
        token = await hook._token(state.tokens(hook.retry_policy))
        await hook.aclose()
        return state.headers(token.value), state.settings.api_url

    headers, api = asyncio.run(request_parts())
    shared: dict[str, aiohttp.ClientSession] = {}

    class BareHook:
        """One GET on the shared session and the model: what any trigger must do per poll."""

        async def get_run(self, run_id: str) -> FlowRun:
            async with shared["session"].get(f"{api}/runs/{run_id}", headers=headers) as resp:
                data = json.loads(await resp.read())
            return FlowRun.from_api(data["items"][0])

        async def aclose(self) -> None:
            pass

    async def trigger(run_id: str, variant: str) -> bool:
        kwargs = FlowServiceRunTrigger(run_id, poll_interval=args.interval).serialize()[1]
        made = FlowServiceRunTrigger(**kwargs)  # rebuilt from its kwargs, as the triggerer does
        if variant != "ours":
            made._log = _Silent()
        if variant == "bare-hook":
            made._make_hook = BareHook  # type: ignore[method-assign]
        async for event in made.run():
            return bool(event.payload["status"] == "terminal")
        return False

    async def floor(run_id: str) -> bool:
        loop = asyncio.get_running_loop()
        offset = FlowServiceRunTrigger(run_id, poll_interval=args.interval)._first_poll_delay()
        next_poll = loop.time() + offset
        for _ in range(args.polls):
            await asyncio.sleep(max(0.0, next_poll - loop.time()))
            async with shared["session"].get(f"{api}/runs/{run_id}", headers=headers) as resp:
                json.loads(await resp.read())
            next_poll += args.interval
        return True

    async def one_pass(variant: str, run_ids: list[str]) -> list[bool]:
        async with aiohttp.ClientSession() as session:
            shared["session"] = session
            if variant == "floor":
                return await asyncio.gather(*(floor(r) for r in run_ids))
            return await asyncio.gather(*(trigger(r, variant) for r in run_ids))

    asyncio.run(one_pass("ours", [next(fresh)]))  # warm-up: one-time imports are not polling cost
    results: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            run_ids = [next(fresh) for _ in range(args.n)]
            TOKEN_CACHE.clear()
            gc.collect()
            began = time.process_time()
            ok = asyncio.run(one_pass(variant, run_ids))
            results[variant].append((time.process_time() - began) / (args.n * args.polls) * 1000)
            if not all(ok):
                raise RuntimeError(f"{variant}: {ok.count(False)} of {args.n} waits did not end")
    return results


if __name__ == "__main__":
    sys.exit(main())
