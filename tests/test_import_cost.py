"""DAG-parse cost holds the line: importing our operator, sensor and hook loads no heavy module.

Every DAG file that uses the provider imports these modules on each parse, so ``requests``,
``aiohttp``, ``tenacity``, ``airflow.triggers.base`` and our trigger / shared session modules
are imported only where they are used. Timing would be flaky on a shared machine; which modules
get loaded is exact. What Airflow itself already loads (it differs between 2.11 and 3.x) is
measured in the same fresh interpreter first and left out. ``benchmarks/dag_parse_cost.py`` gives
the figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

OUR_MODULES = (
    "airflow_provider_flowservice.operators.flow_service",
    "airflow_provider_flowservice.sensors.flow_service",
    "airflow_provider_flowservice.hooks.flow_service",
)
HEAVY_THIRD_PARTY = ("requests", "urllib3", "aiohttp", "tenacity", "airflow.triggers.base")
OURS_LOADED_LATER = (
    "airflow_provider_flowservice.triggers.flow_service",
    "airflow_provider_flowservice.hooks._session",
)

_PROBE = f"""
import importlib, json, sys
import airflow
try:
    from airflow.sdk import DAG, BaseHook, BaseOperator, BaseSensorOperator
except ImportError:  # Airflow 2.x
    from airflow import DAG
    from airflow.hooks.base import BaseHook
    from airflow.models.baseoperator import BaseOperator
    from airflow.sensors.base import BaseSensorOperator
watched = {HEAVY_THIRD_PARTY + OURS_LOADED_LATER!r}
preloaded = [m for m in watched if m in sys.modules]
for name in {OUR_MODULES!r}:
    importlib.import_module(name)
print(json.dumps({{
    "preloaded": preloaded,
    "loaded_by_ours": [m for m in watched if m in sys.modules and m not in preloaded],
}}))
"""


def _probe() -> dict[str, list[str]]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=180,
        env=os.environ.copy(),  # conftest's isolated AIRFLOW_HOME
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data: dict[str, list[str]] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def test_importing_operator_sensor_and_hook_loads_no_heavy_module() -> None:
    data = _probe()
    checked = [m for m in HEAVY_THIRD_PARTY + OURS_LOADED_LATER if m not in data["preloaded"]]
    # On either line Airflow leaves requests or aiohttp unloaded: the check has teeth.
    assert {"requests", "aiohttp"} - set(data["preloaded"]), data
    assert data["loaded_by_ours"] == [], (
        f"Importing {', '.join(OUR_MODULES)} loaded {data['loaded_by_ours']} (checked: {checked}). "
        "Import them inside the functions that use them; see hooks/flow_service.py."
    )

