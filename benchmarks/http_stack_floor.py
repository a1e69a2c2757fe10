"""HTTP stack floor: client CPU per ``GET /runs/{id}``, one request after another, by layer.

``triggerer_load.py`` compares our trigger with the http provider's ``HttpSensorTrigger``; this
script shows where our share of a poll goes, so that figure can be read against what the HTTP
stack alone costs. Each row sends the same request (same headers, same emulator run) sequentially
and prints the client's CPU time per request (``time.process_time``; the emulator runs in a
separate process):

- ``FlowServiceAsyncHook.get_run``: the whole poll of our trigger (auth headers, token cache,
  retry fast path, error check, JSON parse, ``FlowRun`` model) on the loop's shared aiohttp
  session;
- ``aiohttp kept-alive session``: the same GET and JSON parse on one aiohttp session, nothing
  else (the floor under the row above);
- ``aiohttp new session per request``: what the http provider's ``HttpSensorTrigger`` does on
  each poll (a new ``ClientSession``, so a new connection), for scale.

Usage: ``python benchmarks/http_stack_floor.py [--requests 3000] [--rounds 2] [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

RUNS_PATH = "/data/foundation/flowservice/runs"
CONN_ID = "flow_service_floor"


def _start_emulator() -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """The emulator in a child process (``triggerer_load.py``'s emulator role); returns it and its hello."""
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.Popen(
        [sys.executable, os.path.join(here, "triggerer_load.py"), "_emulator", "--polls", "1000000"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError("the emulator process did not start")
    return proc, json.loads(line)


def _stop(proc: subprocess.Popen[str]) -> None:
    try:
        assert proc.stdin is not None
        proc.stdin.write("stop\n")
        proc.stdin.close()
        proc.wait(timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait(timeout=5)


def _post(url: str, data: bytes, headers: dict[str, str]) -> Any:
    import urllib.request

    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:  # 127.0.0.1 only
        return json.loads(response.read())


def _setup(hello: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """Fetch a token and create one run (not measured); returns the run URL and the request headers."""
    from urllib.parse import urlencode

    form = {
        "grant_type": "client_credentials",
        "client_id": hello["client_id"],
        "client_secret": hello["client_secret"],
        "scope": "openid,AdobeID",
    }
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    token = _post(hello["ims_token_url"], urlencode(form).encode(), form_type)["access_token"]
    headers = {
        "Authorization": f"Bearer {token}",
        "x-api-key": hello["client_id"],
        "x-gw-ims-org-id": hello["org_id"],
        "x-sandbox-name": hello["sandbox_name"],
    }
    window = {"windowStartTime": "1735689600", "windowEndTime": "1735776000"}
    body = json.dumps({"flowId": hello["flow_id"], "params": window}).encode()
    created = _post(hello["url"] + RUNS_PATH, body, {**headers, "Content-Type": "application/json"})
    run_id = str((created.get("items") or [created])[0]["id"])
    return f"{hello['url']}{RUNS_PATH}/{run_id}", headers


async def _measure(one: Callable[[], Awaitable[object]], n: int) -> float:
    """CPU seconds per call of ``one`` over ``n`` calls, after one warm-up call."""
    await one()
    started = time.process_time()
    for _ in range(n):
        await one()
    return (time.process_time() - started) / n


async def _ours(url: str, n: int) -> float:
    from airflow_provider_flowservice.hooks.flow_service import FlowServiceAsyncHook

    run_id = url.rsplit("/", 1)[1]
    hook = FlowServiceAsyncHook(CONN_ID)
    try:
        return await _measure(lambda: hook.get_run(run_id), n)
    finally:
        await hook.aclose()


async def _aiohttp_session(url: str, headers: dict[str, str], n: int) -> float:
    import aiohttp

    async with aiohttp.ClientSession() as session:

        async def one() -> object:
            async with session.get(url, headers=headers) as response:
                return json.loads(await response.read())

        return await _measure(one, n)


async def _aiohttp_new_session(url: str, headers: dict[str, str], n: int) -> float:
    import aiohttp

    async def one() -> object:
        async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
            return json.loads(await response.read())

    return await _measure(one, n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per row and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (the best of them is printed)")
    parser.add_argument("--quick", action="store_true", help="200 requests, one round (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.rounds = 200, 1
    if args.requests < 1 or args.rounds < 1:
        parser.error("--requests and --rounds must be >= 1")

    proc, hello = _start_emulator()
    try:
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = hello["connection"]
        url, headers = _setup(hello)
        n = args.requests
        rows: dict[str, list[float]] = {}
        fresh = n // 10 or 1  # a new connection per request is slow: fewer of them
        for _ in range(args.rounds):
            figures = {
                "FlowServiceAsyncHook.get_run": asyncio.run(_ours(url, n)),
                "aiohttp kept-alive session": asyncio.run(_aiohttp_session(url, headers, n)),
                "aiohttp new session per request": asyncio.run(_aiohttp_new_session(url, headers, fresh)),
            }
            for name, value in figures.items():
                rows.setdefault(name, []).append(value)
    finally:
        _stop(proc)

    import airflow

    print(f"HTTP stack floor (Airflow {airflow.__version__}, Python {sys.version.split()[0]}): "
          f"client CPU per sequential GET /runs/{{id}}, best of {args.rounds} x {n}")
    for name, values in rows.items():
        print(f"  {name:<32} {min(values) * 1e6:8.0f} us")
    ours, floor = min(rows["FlowServiceAsyncHook.get_run"]), min(rows["aiohttp kept-alive session"])
    print(f"  ours above the aiohttp floor: {(ours - floor) * 1e6:.0f} us per poll ({ours / floor:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
