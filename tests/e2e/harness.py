"""Helpers for end-to-end DAG tests: real Airflow (``dag.test()``, sqlite) against the emulator.

``dag.test()`` runs every task in this process, handles reschedules and runs triggers inline on
Airflow 2.11 and 3.x, so a whole DAG run (sensor modes and deferral included) takes seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow_provider_flowservice.version_compat import AIRFLOW_V_3_0_PLUS

EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"


@dataclass
class DagResult:
    """What a test reads after one ``dag.test()`` run."""

    dag_run: Any
    states: dict[str, str]
    task_instances: dict[str, Any]
    errors: dict[str, BaseException] = field(default_factory=dict)

    def xcom(self, task_id: str, key: str = "return_value") -> Any:
        return self.task_instances[task_id].xcom_pull(task_ids=task_id, key=key)


#: Exceptions seen by ``record_failure`` (task id -> exception), for the current DAG run.
FAILURES: dict[str, BaseException] = {}


def record_failure(context: Any) -> None:
    """Task ``on_failure_callback``: keep the exception so a test can read its message."""
    FAILURES[context["ti"].task_id] = context["exception"]


def load_example_dags() -> Any:
    """A DagBag of example_dags/ only (no Airflow examples), on either Airflow line."""
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow 3.1+
    except ImportError:
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    import inspect

    kwargs: dict[str, Any] = {"dag_folder": str(EXAMPLE_DAGS)}
    if "include_examples" in inspect.signature(DagBag.__init__).parameters:
        kwargs["include_examples"] = False
    return DagBag(**kwargs)


def _serialize_for_test(dag: Any) -> None:
    """Airflow 3 only runs serialized DAGs: store a DAG defined in a test (not in the DAGs folder)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)


def run_dag(
    dag: Any, *, logical_date: datetime | None = None, conf: dict[str, Any] | None = None
) -> DagResult:
    """Run ``dag`` once with ``dag.test()`` and collect task states, task instances and failures."""
    FAILURES.clear()
    if AIRFLOW_V_3_0_PLUS:
        if Path(dag.fileloc).resolve().parent != EXAMPLE_DAGS:
            _serialize_for_test(dag)
        kwargs: dict[str, Any] = {"run_conf": conf}
        if logical_date is not None:
            kwargs["logical_date"] = logical_date
    else:
        kwargs = {"run_conf": conf, "execution_date": logical_date}
    dag_run = dag.test(**kwargs)
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    states = {task_id: str(getattr(ti.state, "value", ti.state)) for task_id, ti in tis.items()}
    return DagResult(dag_run, states, tis, dict(FAILURES))


def unix(value: datetime) -> int:
    """Unix seconds of an aware datetime."""
    return int(value.timestamp())

