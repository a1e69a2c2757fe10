"""Test and demo helpers: a local Flow Service + IMS emulator and pytest fixtures for it.

Nothing in the provider's runtime code imports this package. Names load lazily, so
``python -m airflow_provider_flowservice.testing.emulator`` does not import the module twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_flowservice.testing.emulator import (
        DEFAULT_FLOW_ID,
        FlowServiceEmulator,
        RecordedRequest,
    )

__all__ = ["DEFAULT_FLOW_ID", "FlowServiceEmulator", "RecordedRequest"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from airflow_provider_flowservice.testing import emulator

        return getattr(emulator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
