"""Everything that differs between Airflow 2.11 and 3.x, in one place.

The Airflow team's ``apache-airflow-providers-common-compat`` already maps the public SDK names
(``BaseHook``, ``BaseOperator``, ``mask_secret``, ...) to the right module on each line, so this
module re-exports from it and only adds what it does not cover.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow import __version__ as _airflow_version
from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseHook,
    BaseOperator,
    BaseOperatorLink,
    BaseSensorOperator,
    Context,
    PokeReturnValue,
    XCom,
    conf,
    mask_secret,
)
from packaging.version import Version

AIRFLOW_VERSION = Version(Version(_airflow_version).base_version)
AIRFLOW_V_3_0_PLUS = Version("3.0.0") <= AIRFLOW_VERSION
AIRFLOW_V_3_3_PLUS = Version("3.3.0") <= AIRFLOW_VERSION

# Retention for task_state_store entries that must outlive every retry (Airflow 3.3+ only; None
# elsewhere, meaning "use the store's default retention").
TASK_STATE_NEVER_EXPIRE: timedelta | None
try:
    from airflow.sdk.execution_time.context import NEVER_EXPIRE as TASK_STATE_NEVER_EXPIRE
except ImportError:  # Airflow < 3.3
    TASK_STATE_NEVER_EXPIRE = None

def get_task_state_store(context: Context) -> Any | None:
    """The task's durable state across tries (Airflow 3.3+), or None where Airflow has none."""
    return context.get("task_state_store") if AIRFLOW_V_3_3_PLUS else None


__all__ = [
    "AIRFLOW_V_3_0_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "TASK_STATE_NEVER_EXPIRE",
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "BaseHook",
    "BaseOperator",
    "BaseOperatorLink",
    "BaseSensorOperator",
    "Context",
    "PokeReturnValue",
    "XCom",
    "conf",
    "get_task_state_store",
    "mask_secret",
]
