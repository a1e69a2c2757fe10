"""What our provider adds to DAG parsing: import time, and no network or connection use.

Every DAG file that uses the provider imports its operator (and often the sensor and hook) each
time the DAG processor parses it, so their import cost is paid per parse. Measured in fresh
interpreters (``python -c`` subprocesses, warm ``.pyc`` caches, a throw-away AIRFLOW_HOME), median
of several runs:

- ``airflow``: ``import airflow``;
- ``dag baseline``: what any DAG file pays anyway: ``DAG``, ``BaseOperator``, ``BaseSensorOperator``
  and ``BaseHook`` from Airflow's public API;
- ``ours``: then our operator, sensor and hook modules;
- ``dbt Cloud``: in interpreters of their own, the same baseline then the dbt Cloud provider's
  operator, sensor and hook modules (the peer; ``pip install apache-airflow-providers-dbt-cloud``).
  Goal: ours at most 0.1x the peer's, measured in the same run (an absolute figure is noise here).

``-X importtime`` shows which modules dominate our share. A second part constructs the operator
and the sensor in a DAG (and a hook) with sockets and connection lookups patched to raise, and
shows that parsing makes no network call and reads no connection.

Usage: ``python benchmarks/dag_parse_cost.py [--runs 7] [--quick]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

GOAL_RATIO = 0.1
PEER_MODULES = (
    "airflow.providers.dbt.cloud.operators.dbt",
    "airflow.providers.dbt.cloud.sensors.dbt",
    "airflow.providers.dbt.cloud.hooks.dbt",
)
OUR_MODULES = (
    "airflow_provider_flowservice.operators.flow_service",
    "airflow_provider_flowservice.sensors.flow_service",
    "airflow_provider_flowservice.hooks.flow_service",
)
MARKER = "-- dag_parse_cost: baseline done --"

# The imports a DAG file makes whatever operators it uses, on each Airflow line.
_BASELINE = """
try:
    from airflow.sdk import DAG, BaseOperator, BaseSensorOperator, BaseHook
except ImportError:  # Airflow 2.x
    from airflow import DAG
    from airflow.models.baseoperator import BaseOperator
    from airflow.sensors.base import BaseSensorOperator
    from airflow.hooks.base import BaseHook
"""

_TIMING_TEMPLATE = """
import json, sys, time
t0 = time.perf_counter()
import airflow
t1 = time.perf_counter()
{baseline}
t2 = time.perf_counter()
watch = ("httpx", "requests", "tenacity", "pendulum", "aiohttp", "asgiref")
before = [m for m in watch if m in sys.modules]
print({marker!r}, file=sys.stderr, flush=True)
each = []
for name in {modules!r}:
    t = time.perf_counter()
    __import__(name)
    each.append(time.perf_counter() - t)
t3 = time.perf_counter()
new = [m for m in watch if m in sys.modules and m not in before]
stages = {{"airflow": t1 - t0, "baseline": t2 - t1, "ours": t3 - t2}}
print(json.dumps({{**stages, "each": each, "before": before, "new": new}}))
"""


def _timing(modules: tuple[str, ...]) -> str:
    return _TIMING_TEMPLATE.format(baseline=_BASELINE, marker=MARKER, modules=modules)


_TIMING = _timing(OUR_MODULES)

_NO_NETWORK = """
import json, socket, sys, time

calls = []

def _deny(what):
    def deny(*args, **kwargs):
        calls.append(what)
        raise OSError(f"dag_parse_cost: {what} is forbidden while parsing a DAG")
    return deny

socket.socket.connect = _deny("socket.connect")
socket.socket.connect_ex = _deny("socket.connect_ex")
socket.socket.sendto = _deny("socket.sendto")
socket.create_connection = _deny("socket.create_connection")
socket.getaddrinfo = _deny("socket.getaddrinfo")

from airflow_provider_flowservice.version_compat import BaseHook
hook_classes = {BaseHook}
try:
    from airflow.hooks.base import BaseHook as CoreBaseHook
    hook_classes.add(CoreBaseHook)
except ImportError:
    pass
for cls in hook_classes:
    for name in ("get_connection", "aget_connection"):
        if hasattr(cls, name):
            setattr(cls, name, classmethod(_deny(f"{cls.__module__}.BaseHook.{name}")))
try:
    from airflow.models.connection import Connection
    Connection.get_connection_from_secrets = classmethod(_deny("Connection.get_connection_from_secrets"))
except ImportError:
    pass

import datetime
try:
    from airflow.sdk import DAG
except ImportError:
    from airflow import DAG
from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook
from airflow_provider_flowservice.operators.flow_service import FlowServiceCreateRunOperator
from airflow_provider_flowservice.sensors.flow_service import FlowServiceRunSensor

N = 200
start = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
t0 = time.perf_counter()
with DAG("dag_parse_cost_probe", schedule=None, start_date=start) as dag:
    for i in range(N):
        create = FlowServiceCreateRunOperator(
            task_id=f"create_{i}", flow_id="d8a68c3a-8f3e-4b8d-9f00-5c1d0a6e7a11",
            delta_column="updated_at", deferrable=True, poll_interval=60,
        )
        wait = FlowServiceRunSensor(
            task_id=f"wait_{i}", run_id="{{ ti.xcom_pull(task_ids='create_%d') }}" % i, deferrable=True,
        )
        create >> wait
t1 = time.perf_counter()
FlowServiceHook("flow_service_default")
print(json.dumps({"calls": calls, "tasks": 2 * N, "seconds": t1 - t0}))
"""


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
    # Warm .pyc caches as on a real DAG processor, even where PYTHONDONTWRITEBYTECODE is set (it
    # would make every run compile all of Airflow and this package from source): the warm-up run
    # writes them under the throw-away home, leaving the source tree and site-packages untouched.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        {
            "PYTHONPYCACHEPREFIX": str(home / "pycache"),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        }
    )
    return env


def _run(code: str, env: dict[str, str], *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    """Run ``code`` in a fresh interpreter (bounded); exit with its stderr if it fails."""
    command = [sys.executable, *extra, "-c", code]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise SystemExit(f"benchmark subprocess failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def measure_imports(env: dict[str, str], runs: int) -> dict[str, Any]:
    """Median seconds of each import stage over ``runs`` fresh interpreters (after one warm-up)."""
    _run(_TIMING, env)  # warm-up: writes .pyc files and airflow.cfg
    samples = [json.loads(_run(_TIMING, env).stdout.strip().splitlines()[-1]) for _ in range(runs)]
    stages = ("airflow", "baseline", "ours")
    result: dict[str, Any] = {k: statistics.median(s[k] for s in samples) for k in stages}
    result["ours_min"] = min(s["ours"] for s in samples)
    result["ours_max"] = max(s["ours"] for s in samples)
    result["each"] = [statistics.median(s["each"][i] for s in samples) for i in range(len(OUR_MODULES))]
    result["before"] = samples[-1]["before"]
    result["new"] = samples[-1]["new"]
    return result


def peer_installed() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(PEER_MODULES[0]) is not None
    except ModuleNotFoundError:
        return False


def measure_pair(env: dict[str, str], runs: int) -> tuple[float, float]:
    """Medians of our modules' and the peer's import cost, runs interleaved (same machine state)."""
    peer_code = _timing(PEER_MODULES)
    _run(peer_code, env)  # warm-up
    ours, peer = [], []
    for _ in range(runs):
        ours.append(json.loads(_run(_TIMING, env).stdout.strip().splitlines()[-1])["ours"])
        peer.append(json.loads(_run(peer_code, env).stdout.strip().splitlines()[-1])["ours"])
    return statistics.median(ours), statistics.median(peer)


def import_breakdown(env: dict[str, str], top: int = 8) -> list[tuple[float, float, str]]:
    """Modules first imported by our modules, by self time: (self ms, cumulative ms, name)."""
    stderr = _run(_TIMING, env, "-X", "importtime").stderr
    _, _, ours = stderr.partition(MARKER)
    rows: list[tuple[float, float, str]] = []
    for line in ours.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = (part.strip() for part in line[len("import time:") :].split("|"))
        rows.append((int(self_us) / 1000, int(cumulative_us) / 1000, name))
    return sorted(rows, reverse=True)[:top]


def check_no_network(env: dict[str, str]) -> dict[str, Any]:
    """Construct operators, sensors and a hook with the network and connection lookups forbidden."""
    result: dict[str, Any] = json.loads(_run(_NO_NETWORK, env).stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh interpreters per figure (median)")
    parser.add_argument("--quick", action="store_true", help="2 runs (smoke test)")
    args = parser.parse_args(argv)
    runs = 2 if args.quick else max(1, args.runs)

    import airflow

    with tempfile.TemporaryDirectory(prefix="dag-parse-cost-") as tmp:
        env = _env(Path(tmp))
        figures = measure_imports(env, runs)
        pair = measure_pair(env, runs) if peer_installed() else None
        breakdown = import_breakdown(env)
        probe = check_no_network(env)

    ms = {k: figures[k] * 1000 for k in ("airflow", "baseline", "ours", "ours_min", "ours_max")}
    print(f"DAG-parse cost of airflow-provider-flowservice (Airflow {airflow.__version__}, "
          f"Python {sys.version.split()[0]}, median of {runs} fresh interpreters)")
    print(f"  import airflow                          {ms['airflow']:8.1f} ms")
    print(f"  + DAG/BaseOperator/BaseSensor/BaseHook  {ms['baseline']:8.1f} ms")
    print(f"  + our operator, sensor and hook modules {ms['ours']:8.1f} ms "
          f"(min {ms['ours_min']:.1f}, max {ms['ours_max']:.1f})")
    for name, seconds in zip(OUR_MODULES, figures["each"], strict=True):
        print(f"      {name:<52} {seconds * 1000:8.1f} ms")
    print(f"  already loaded by the baseline: {', '.join(figures['before']) or 'none'}; "
          f"first loaded by ours: {', '.join(figures['new']) or 'none'}")
    if pair is None:
        print("  peer (dbt Cloud provider) not installed: pip install apache-airflow-providers-dbt-cloud "
              "for the ratio")
    else:
        ours_ms, peer_ms = pair[0] * 1000, pair[1] * 1000
        ratio = ours_ms / peer_ms if peer_ms else float("nan")
        print(f"  side by side, interleaved: ours {ours_ms:.1f} ms | dbt Cloud operator+sensor+hook "
              f"{peer_ms:.1f} ms | ratio {ratio:.3f} (goal <= {GOAL_RATIO}: "
              f"{'OK' if ratio <= GOAL_RATIO else 'MISSED'})")
    print("  largest imports in our share (self ms / cumulative ms):")
    for self_ms, cumulative_ms, name in breakdown:
        print(f"    {self_ms:7.1f} {cumulative_ms:8.1f}  {name}")
    per_task_us = probe["seconds"] / probe["tasks"] * 1e6
    calls = probe["calls"]
    print(f"construction: {probe['tasks']} tasks (operator + sensor pairs) in "
          f"{probe['seconds'] * 1000:.1f} ms ({per_task_us:.0f} us per task)")
    detail = f"({', '.join(sorted(set(calls)))})" if calls else "(sockets and connection lookups would raise)"
    print(f"network calls or connection reads during construction: {len(calls)} {detail}")
    return 1 if calls else 0


if __name__ == "__main__":
    sys.exit(main())
