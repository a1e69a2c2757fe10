"""Everything that differs between Airflow 2.11 and 3.x, in one place.

The Airflow team's ``apache-airflow-providers-common-compat`` already maps the public SDK names
(``BaseHook``, ``BaseOperator``, ``mask_secret``, ...) to the right module on each line, so this
module re-exports from it and only adds what it does not cover.
"""

from __future__ import annotations

from airflow import __version__ as _airflow_version
from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSkipException,
    BaseHook,
    BaseOperator,
    BaseOperatorLink,
    BaseSensorOperator,
    Context,
    XCom,
    conf,
    mask_secret,
)
from packaging.version import Version

AIRFLOW_VERSION = Version(Version(_airflow_version).base_version)
AIRFLOW_V_3_0_PLUS = AIRFLOW_VERSION >= Version("3.0.0")
AIRFLOW_V_3_3_PLUS = AIRFLOW_VERSION >= Version("3.3.0")

__all__ = [
    "AIRFLOW_V_3_0_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "AirflowException",
    "AirflowFailException",
    "AirflowSkipException",
    "BaseHook",
    "BaseOperator",
    "BaseOperatorLink",
    "BaseSensorOperator",
    "Context",
    "XCom",
    "conf",
    "mask_secret",
]
