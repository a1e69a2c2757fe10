"""A task's button to its flow run in the Experience Platform UI.

The URL is pushed to XCom (key ``run_url``) by the operator as soon as the run exists; the link
only reads it back. It never reads a connection or calls an API while the UI renders.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_flowservice.version_compat import BaseOperatorLink, XCom

#: XCom key holding the run's UI URL.
RUN_URL_XCOM_KEY = "run_url"


class FlowServiceRunLink(BaseOperatorLink):
    """Link to the flow run in Experience Platform; empty until the run exists."""

    name = "Flow Service run"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        """Return the run URL pushed by the task, or "" when there is none."""
        value = XCom.get_value(ti_key=ti_key, key=RUN_URL_XCOM_KEY)
        return value if isinstance(value, str) else ""


def pushed_run_url(ti: Any) -> str | None:
    """The run URL ``ti`` pushed earlier in this try (e.g. before deferring), or None."""
    if ti is None:
        return None
    value = ti.xcom_pull(task_ids=ti.task_id, key=RUN_URL_XCOM_KEY, map_indexes=getattr(ti, "map_index", -1))
    return value if isinstance(value, str) and value else None
