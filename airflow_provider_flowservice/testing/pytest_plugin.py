"""Opt-in pytest fixtures: ``pytest_plugins = ["airflow_provider_flowservice.testing.pytest_plugin"]``.

``flow_service_emulator`` gives a running emulator per test; ``flow_service_conn`` also points
``AIRFLOW_CONN_FLOW_SERVICE_DEFAULT`` at it, so hooks and operators with the default connection
id talk to the emulator.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_flowservice._auth import TOKEN_CACHE
from airflow_provider_flowservice._token_file_cache import ENV_DIR
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator


@pytest.fixture
def flow_service_emulator(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FlowServiceEmulator]:
    """A started emulator on a free port, stopped after the test.

    The process-wide token cache is emptied around it, and the cross-process token file cache
    points at an empty private directory for the test (``FLOW_SERVICE_TOKEN_CACHE_DIR``, inherited
    by the processes the test starts): a later emulator may reuse the port, and a token from an
    earlier one would cost a 401 and a renewal (and skew IMS request counts).
    """
    monkeypatch.setenv(ENV_DIR, str(tmp_path_factory.mktemp("ims-tokens")))
    TOKEN_CACHE.clear()
    with FlowServiceEmulator() as emulator:
        yield emulator
    TOKEN_CACHE.clear()


@pytest.fixture
def flow_service_conn(
    flow_service_emulator: FlowServiceEmulator, monkeypatch: pytest.MonkeyPatch
) -> FlowServiceEmulator:
    """The emulator, with the default Flow Service connection set to it for this test."""
    monkeypatch.setenv("AIRFLOW_CONN_FLOW_SERVICE_DEFAULT", flow_service_emulator.connection_json())
    return flow_service_emulator


__all__ = ["flow_service_conn", "flow_service_emulator"]
