"""Test set-up shared by every test: an isolated AIRFLOW_HOME and the emulator fixtures.

The environment is set at import time, before anything imports Airflow, so no test ever touches a
user's ~/airflow.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="flowservice-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parent.parent / "example_dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME / 'airflow.db'}"
os.environ["AIRFLOW__CORE__FERNET_KEY"] = ""
os.environ.pop("AIRFLOW_CONN_FLOW_SERVICE_DEFAULT", None)
# Tests poll every few ms; the trigger's 1 s floor (triggers/flow_service.py) is tested on its own.
os.environ["FLOW_SERVICE_MIN_POLL_INTERVAL"] = "0.001"

pytest_plugins = ["airflow_provider_flowservice.testing.pytest_plugin"]

import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Create the metadata database of the test AIRFLOW_HOME once per session (real Airflow, sqlite)."""
    cli = Path(sys.executable).with_name("airflow")
    subprocess.run(
        [str(cli), "db", "migrate"], check=True, capture_output=True, timeout=300, env=os.environ.copy()
    )
    return _HOME


@pytest.fixture(autouse=True)
def _private_token_files(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test (and every process it starts) gets an empty IMS token file cache of its own.

    Emulators reuse ports and share default credentials: a token file left by an earlier test would
    cost a 401 and a renewal, and skew the IMS request counts tests assert.
    """
    monkeypatch.setenv("FLOW_SERVICE_TOKEN_CACHE_DIR", str(tmp_path_factory.mktemp("ims-tokens")))


_SERVICE_TESTS = ("tests/system/", "tests/deployment/", "tests/ui/")
"""Tests that start Airflow's own services (scheduler, triggerer, api-server, Celery workers...)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test`` runs two workers with ``--dist loadgroup``) the tests that
    start Airflow's services all go to one worker and run one at a time: two deployments at once on
    a 2-core machine would starve each other, while the in-process tests fill the other worker."""
    for item in items:
        if any(part in str(item.path).replace("\\", "/") for part in _SERVICE_TESTS):
            item.add_marker(pytest.mark.xdist_group("airflow-services"))
