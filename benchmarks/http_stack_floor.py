"""HTTP stack floor: client CPU per ``GET /runs/{id}``, one request after another, by layer.

``triggerer_load.py`` compares our trigger with the http provider's ``HttpSensorTrigger``; this
script shows where our share of a poll goes, so that figure can be read against what the HTTP
stack alone costs. Each row sends the same request (same headers, same emulator run) on one
kept-alive connection, sequentially, and prints the client's CPU time per request
(``time.process_time``; the emulator runs in a separate process):

- ``FlowServiceAsyncHook.get_run``: the whole poll of our trigger (auth headers, token cache,
  retry fast path, error check, JSON parse, ``FlowRun`` model);
- ``httpx transport``: the httpx/httpcore/h11 stack our async hook sends through, plus the JSON
  parse (the floor under the row above);
- ``httpcore pool``: the same without httpx's request/response objects;
- ``aiohttp session``: aiohttp with its C-accelerated HTTP parser, one kept-alive session (the
  http provider's trigger uses aiohttp too, but opens a new session and connection per poll).

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


def _setup(hello: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """Fetch a token and create one run (not measured); returns the run URL and the request headers."""
    import httpx

    form = {
        "grant_type": "client_credentials",
        "client_id": hello["client_id"],
        "client_secret": hello["client_secret"],
        "scope": "openid,AdobeID",
    }
    token = httpx.post(hello["ims_token_url"], data=form, timeout=30).json()["access_token"]
    headers = {
        "Authorization": f"Bearer {token}",
        "x-api-key": hello["client_id"],
        "x-gw-ims-org-id": hello["org_id"],
        "x-sandbox-name": hello["sandbox_name"],
    }
    window = {"windowStartTime": "1735689600", "windowEndTime": "1735776000"}
    body = {"flowId": hello["flow_id"], "params": window}
    created = httpx.post(hello["url"] + RUNS_PATH, json=body, headers=headers, timeout=30).json()
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


async def _httpx_transport(url: str, headers: dict[str, str], n: int) -> float:
    import httpx

    target = httpx.URL(url)
    async with httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=1)) as transport:

        async def one() -> object:
            response = await transport.handle_async_request(httpx.Request("GET", target, headers=headers))
            try:
                await response.aread()
            finally:
                await response.aclose()
            return json.loads(response.content)

        return await _measure(one, n)


async def _httpcore_pool(url: str, headers: dict[str, str], n: int) -> float:
    import httpcore

    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    async with httpcore.AsyncConnectionPool(max_connections=1) as pool:

        async def one() -> object:
            return json.loads((await pool.request("GET", url, headers=raw)).content)

        return await _measure(one, n)


async def _aiohttp_session(url: str, headers: dict[str, str], n: int) -> float | None:
    try:
        import aiohttp
    except ImportError:  # not installed with Airflow 3 unless the http provider is
        return None
    async with aiohttp.ClientSession() as session:

        async def one() -> object:
            async with session.get(url, headers=headers) as response:
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
        for _ in range(args.rounds):
            figures = {
                "FlowServiceAsyncHook.get_run": asyncio.run(_ours(url, n)),
                "httpx transport": asyncio.run(_httpx_transport(url, headers, n)),
                "httpcore pool": asyncio.run(_httpcore_pool(url, headers, n)),
                "aiohttp session": asyncio.run(_aiohttp_session(url, headers, n)),
            }
            for name, value in figures.items():
                if value is not None:
                    rows.setdefault(name, []).append(value)
    finally:
        _stop(proc)

    import airflow

    print(f"HTTP stack floor (Airflow {airflow.__version__}, Python {sys.version.split()[0]}): "
          f"client CPU per sequential GET /runs/{{id}}, best of {args.rounds} x {n}")
    for name, values in rows.items():
        print(f"  {name:<30} {min(values) * 1e6:8.0f} us")
    if "aiohttp session" not in rows:
        print("  aiohttp session                not installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
