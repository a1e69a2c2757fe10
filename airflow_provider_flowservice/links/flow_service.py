"""A task's button to its flow run in the Experience Platform UI.

The URL is pushed to XCom (key ``run_url``) by the operator as soon as the run exists; the link
only reads it back. It never reads a connection or calls an API while the UI renders.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_flowservice.version_compat import BaseOperatorLink, XCom, push_extra_link_url

#: XCom key holding the run's UI URL.
RUN_URL_XCOM_KEY = "run_url"
#: Attribute an operator instance sets to what it knows of its run URL in this process: the URL,
#: or "" once it knows no run exists (its execute() failed first). Absent or None: read XCom.
KNOWN_RUN_URL_ATTR = "_known_run_url"


class FlowServiceRunLink(BaseOperatorLink):
    """Link to the dataflow's runs in Experience Platform; empty until the run exists.

    The default ``ui_url_template`` opens the dataflow's run list (Experience Platform has no
    stable per-run page), and the label says so.
    """

    name = "Dataflow runs (Experience Platform)"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        """Return the run URL pushed by the task, or "" when there is none.

        Airflow 3 calls this at the end of every try, in the task's own process: when the operator
        knows the answer (e.g. the create failed before a run existed) no XCom is read, so no
        "XCom not found" error is logged for a run that never existed.
        """
        known = getattr(operator, KNOWN_RUN_URL_ATTR, None)
        if isinstance(known, str):
            return known
        value = XCom.get_value(ti_key=ti_key, key=RUN_URL_XCOM_KEY)
        return value if isinstance(value, str) else ""


def publish_run_url(ti: Any, run_id: str, run_url: str, log: Any) -> None:
    """Push the run URL for the link, and on Airflow 3 also as the link's own XCom at once.

    The second push makes the button work while the task still waits (Airflow 3 renders links
    from that XCom, otherwise written only when the task ends or defers). Its failure is logged,
    never raised: the link is a convenience.
    """
    ti.xcom_push(key=RUN_URL_XCOM_KEY, value=run_url)
    try:
        push_extra_link_url(ti, FlowServiceRunLink(), run_url)
    except Exception as exc:
        log.warning("Could not publish the extra link for flow run %s yet: %s", run_id, exc)


def pushed_run_url(ti: Any, log: Any) -> str | None:
    """The run URL ``ti`` pushed earlier in this try (e.g. before deferring), or None.

    An XCom that cannot be read is logged and gives None: the URL only enriches a message.
    """
    if ti is None:
        return None
    try:
        value = ti.xcom_pull(
            task_ids=ti.task_id, key=RUN_URL_XCOM_KEY, map_indexes=getattr(ti, "map_index", -1)
        )
    except Exception as exc:
        log.warning("Could not read XCom %r of this task: %s", RUN_URL_XCOM_KEY, exc)
        return None
    return value if isinstance(value, str) and value else None


__all__ = ["RUN_URL_XCOM_KEY", "FlowServiceRunLink"]
