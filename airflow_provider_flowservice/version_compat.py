"""Everything that differs between Airflow 2.11 and 3.x, in one place.

The Airflow team's ``apache-airflow-providers-common-compat`` already maps the public SDK names
(``BaseHook``, ``BaseOperator``, ``mask_secret``, ...) to the right module on each line, so this
module re-exports from it and only adds what it does not cover.
"""

from __future__ import annotations

from typing import Any

from airflow import __version__ as _airflow_version
from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    Asset,
    AssetAlias,
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


def get_task_state_store(context: Context) -> Any | None:
    """The task's durable state across tries (Airflow 3.3+), or None where Airflow has none."""
    return context.get("task_state_store") if AIRFLOW_V_3_3_PLUS else None


def triggering_asset_events(context: Context) -> Any:
    """The asset events that triggered this DAG run (3.x ``triggering_asset_events``, 2.11 dataset)."""
    key = "triggering_asset_events" if AIRFLOW_V_3_0_PLUS else "triggering_dataset_events"
    return context.get(key) or {}
def previous_try_max_tries(ti: Any) -> int | None:
    """``max_tries`` as recorded for the try before ``ti``'s current one, where Airflow keeps it.

    Airflow 2 records every ended try in ``TaskInstanceHistory`` before a retry or a clear, and a
    clear then changes ``max_tries``: equal values mean an automatic retry of the same sequence,
    whatever the operator's ``retries`` says now. Airflow 3 gives a task no database access: None,
    as when the row or the database cannot be read.
    """
    if AIRFLOW_V_3_0_PLUS:
        return None
    names = ("dag_id", "task_id", "run_id")
    if not all(isinstance(getattr(ti, n, None), str) for n in names) or not isinstance(ti.try_number, int):
        return None
    try:
        from airflow.models.taskinstancehistory import TaskInstanceHistory
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            value = session.scalar(
                select(TaskInstanceHistory.max_tries).where(
                    TaskInstanceHistory.dag_id == ti.dag_id,
                    TaskInstanceHistory.task_id == ti.task_id,
                    TaskInstanceHistory.run_id == ti.run_id,
                    TaskInstanceHistory.map_index == getattr(ti, "map_index", -1),
                    TaskInstanceHistory.try_number == ti.try_number - 1,
                )
            )
    except Exception:
        return None
    return value if isinstance(value, int) and value >= 0 else None


def push_extra_link_url(ti: Any, link: Any, url: str) -> None:
    """Make an extra link show ``url`` now, while the task is still running.

    Airflow 3's API server renders a link from the XCom ``link.xcom_key``, which the task runner
    writes only when the task ends or defers. With the stock XCom backend the public
    ``ti.xcom_push`` writes it to the metadata database at once; only a custom backend (which the
    API server does not read for links) needs the runner's own private route
    (``XCom._set_xcom_in_db``). Airflow 2 renders links by calling ``get_link`` in the webserver:
    nothing to do. Callers push once per try (the value never changes).
    """
    if not AIRFLOW_V_3_0_PLUS:
        return
    set_in_db = getattr(XCom, "_set_xcom_in_db", None)
    names = ("dag_id", "task_id", "run_id")
    if (
        not _stock_xcom_backend()
        and set_in_db is not None
        and all(isinstance(getattr(ti, n, None), str) for n in names)
    ):
        set_in_db(
            key=link.xcom_key,
            value=url,
            dag_id=ti.dag_id,
            task_id=ti.task_id,
            run_id=ti.run_id,
            map_index=getattr(ti, "map_index", -1),
        )
    else:
        ti.xcom_push(key=link.xcom_key, value=url)


def _stock_xcom_backend() -> bool:
    """True when ``[core] xcom_backend`` is Airflow's own (values stored in the metadata database)."""
    from airflow.sdk.bases.xcom import BaseXCom

    return XCom is BaseXCom


__all__ = [
    "AIRFLOW_V_3_0_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "Asset",
    "AssetAlias",
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
    "previous_try_max_tries",
    "push_extra_link_url",
    "triggering_asset_events",
]
