"""Fixtures for end-to-end DAG tests: one emulator per module, the example DAGs parsed once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_flowservice._auth import TOKEN_CACHE
from airflow_provider_flowservice.testing.emulator import DEFAULT_FLOW_ID, FlowServiceEmulator
from tests.e2e.harness import load_example_dags


@pytest.fixture(scope="module")
def e2e_emulator(airflow_db: Path) -> Iterator[FlowServiceEmulator]:
    """One emulator per test module (table flow with the default id), set as ``flow_service_default``."""
    TOKEN_CACHE.clear()  # a token cached for an earlier emulator on the same port is not valid here
    with FlowServiceEmulator(polls_to_finish=2) as emulator, pytest.MonkeyPatch.context() as mp:
        emulator.add_flow(DEFAULT_FLOW_ID, kind="table")
        mp.setenv("AIRFLOW_CONN_FLOW_SERVICE_DEFAULT", emulator.connection_json())
        mp.delenv("FLOW_SERVICE_FLOW_ID", raising=False)
        mp.delenv("FLOW_SERVICE_POLL_INTERVAL", raising=False)
        yield emulator
    TOKEN_CACHE.clear()


@pytest.fixture
def example_dagbag(airflow_db: Path) -> Any:
    """The example DAGs, freshly parsed.

    Fresh per test: ``dag.test()`` runs tasks in this process and renders templated fields onto
    the task objects, so a DAG object must not be run twice.
    """
    bag = load_example_dags()
    assert not bag.import_errors, bag.import_errors
    return bag
