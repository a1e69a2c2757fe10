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
