"""Provider metadata read by Airflow's ProvidersManager (``airflow providers list``)."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    """Describe the package, its connection type, hook and extra link to Airflow."""
    from airflow_provider_flowservice import __version__

    return {
        "package-name": "airflow-provider-flowservice",
        "name": "Adobe Experience Platform Flow Service",
        "description": "On-demand ingestion runs for Adobe Experience Platform dataflows.",
        "versions": [__version__],
        "connection-types": [
            {
                "connection-type": "adobe_flow_service",
                "hook-class-name": "airflow_provider_flowservice.hooks.flow_service.FlowServiceHook",
            }
        ],
        "extra-links": ["airflow_provider_flowservice.links.flow_service.FlowServiceRunLink"],
    }
