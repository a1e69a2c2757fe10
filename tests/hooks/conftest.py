"""Fixtures of the hook tests: a clean process-wide token cache and tiny retry waits."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from airflow_provider_flowservice.auth import TOKEN_CACHE
from airflow_provider_flowservice.retry import RetryPolicy
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator

FAST = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05, max_total_seconds=20.0)
"""Retry policy with waits of milliseconds, so fault tests stay fast."""


@pytest.fixture(autouse=True)
def _clean_token_cache() -> Iterator[None]:
    """No test sees a token another test left behind (emulator ports get reused)."""
    TOKEN_CACHE.clear()
    yield
    TOKEN_CACHE.clear()


@pytest.fixture
def set_conn(
    flow_service_emulator: FlowServiceEmulator, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., str]:
    """Define a connection (default id unless ``conn_id``) on the emulator, with extra overrides."""

    def define(conn_id: str = "flow_service_default", **extra: object) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", flow_service_emulator.connection_json(**extra))
        return conn_id

    return define
