"""Smoke test of the benchmark scripts: they run end to end in quick mode and print their figures.

No timing is asserted here (figures depend on the machine); what must hold is that the scripts
work on this Airflow line, every waited-for run finished, and DAG parsing made no network call
and read no connection (both scripts exit non-zero otherwise).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.system, pytest.mark.timeout(290)]

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _run(script: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=270,
        env=env,
        check=False,
    )
    detail = f"{script} exited {result.returncode}\n{result.stdout}\n{result.stderr[-4000:]}"
    assert result.returncode == 0, detail
    return result.stdout


def test_triggerer_load_quick_prints_both_implementations_and_each_rounds_ratio() -> None:
    out = _run("triggerer_load.py", "--quick", "--repeat", "2")
    lines = out.splitlines()
    ours = [line for line in lines if line.split()[:2] == ["50", "ours"]]
    baseline = [line for line in lines if line.split()[:2] == ["50", "baseline"]]
    assert ours and baseline, out
    # Every run reached its end (column "ok") and the client asked IMS for one token.
    assert ours[0].split()[2] == "50" and ours[0].split()[3] == "1", out
    assert "N=50: ours: token requests 1" in out, out
    assert "CPU per poll ours/baseline" in out, out
    rounds = [line for line in lines if "each round:" in line]
    assert len(rounds) == 1 and len(rounds[0].split("each round: ")[1].split(";")[0].split()) == 2, out
    assert "lag ms  start-up  polling" in out, out  # the lag split into its two phases


def test_dag_parse_cost_quick_prints_figures_and_no_network() -> None:
    out = _run("dag_parse_cost.py", "--quick")
    assert "+ our operator, sensor and hook modules" in out, out
    assert "network calls or connection reads during construction: 0" in out, out


def test_http_stack_floor_quick_prints_each_layer() -> None:
    out = _run("http_stack_floor.py", "--quick")
    layers = ("FlowServiceAsyncHook.get_run", "aiohttp kept-alive session", "aiohttp new session per request")
    for layer in layers:
        assert layer in out, out
    ours = next(line for line in out.splitlines() if "FlowServiceAsyncHook.get_run" in line)
    assert float(ours.split()[-2]) > 0, out


def test_token_requests_quick_prints_both_sides() -> None:
    out = _run("token_requests.py", "--quick")
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert total.split()[1:] == ["1", "6"], out  # on: 1 per lifetime; off: one per process (3 + 3)
    assert "-> met" in out, out


def test_startup_floor_prints_both_figures() -> None:
    out = _run("startup_floor.py", "--n", "200", "--rounds", "1")
    for label in ("tasks that only sleep", "FlowServiceRunTrigger, to its first sleep"):
        line = next(line for line in out.splitlines() if label in line)
        assert float(line.split(label)[1].split()[0]) >= 0, out


def test_poll_breakdown_quick_prints_each_variant_and_each_part() -> None:
    out = _run("poll_breakdown.py", "--n", "5", "--interval", "0.2", "--polls", "2", "--rounds", "2")
    for variant in ("floor", "bare-hook", "silent", "ours"):
        line = next((x for x in out.splitlines() if x.split()[:1] == [variant]), None)
        assert line is not None and len(line.split("rounds")[1].split()) == 2, out
    for part in ("the trigger around the request", "our hook over a bare GET", "the trigger's log lines"):
        assert part in out, out
