"""Start-up floor: worst event-loop lag when N tasks start in one loop iteration, bare vs. our triggers.

``triggerer_load.py`` starts all its triggers at once by default (as a triggerer restart could, were
it to start them in one go); the lag of that start-up has a floor that is asyncio's own: N tasks
whose first step runs in one iteration. This script measures it with a 10 ms ticker, for tasks
that only sleep and for ``FlowServiceRunTrigger``s (built from kwargs, run up to their first
sleep; a 30 s interval, so none polls while measured and no server is needed). The ticker stops
before the tasks are cancelled. Median of ``--rounds`` rounds, each in the same process after one
warm-up round.

Usage: ``python benchmarks/startup_floor.py [--n 5000] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable

TICK = 0.01


async def worst_lag(n: int, make: Callable[[int], Awaitable[None]]) -> float:
    """Worst ticker lateness (ms) while ``n`` tasks made by ``make`` start in one iteration."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    stop = False

    async def ticker() -> None:
        nonlocal worst
        while not stop:
            before = loop.time()
            await asyncio.sleep(TICK)
            worst = max(worst, loop.time() - before - TICK)

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    tasks = [asyncio.create_task(make(i)) for i in range(n)]
    await asyncio.sleep(1.0)
    stop = True
    await tick
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return worst * 1000


async def bare(_: int) -> None:
    await asyncio.sleep(3600)


async def trigger(i: int) -> None:
    from airflow_provider_flowservice.triggers.flow_service import FlowServiceRunTrigger

    kwargs = {"run_id": f"run-{i}", "poll_interval": 30.0, "end_time": time.time() + 3600}
    async for _ in FlowServiceRunTrigger(**kwargs).run():
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    conn = {"conn_type": "adobe_flow_service", "login": "id", "password": "not-a-secret",
            "extra": {"org_id": "ORG@AdobeOrg"}}
    os.environ.setdefault("AIRFLOW_CONN_FLOW_SERVICE_DEFAULT", json.dumps(conn))
    asyncio.run(worst_lag(50, trigger))  # warm-up: imports
    figures: dict[str, list[float]] = {"bare": [], "trigger": []}
    for _ in range(args.rounds):
        figures["bare"].append(asyncio.run(worst_lag(args.n, bare)))
        figures["trigger"].append(asyncio.run(worst_lag(args.n, trigger)))
    load = os.getloadavg()[0]
    print(f"Start-up lag, N={args.n} tasks started in one loop iteration, median of {args.rounds} "
          f"(load average {load:.1f}):")
    labels = {"bare": "tasks that only sleep", "trigger": "FlowServiceRunTrigger, to its first sleep"}
    for name, values in figures.items():
        print(f"  {labels[name]:<42} {statistics.median(values):7.1f} ms  "
              f"(min {min(values):.1f}, max {max(values):.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
