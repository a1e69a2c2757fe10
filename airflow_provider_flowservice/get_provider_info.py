"""Provider metadata read by Airflow's ProvidersManager (``airflow providers list``).

Kept free of imports: Airflow calls this while it discovers providers, before it is ready to
import hooks. The connection form metadata (``conn-fields``, ``ui-field-behaviour``) is what
Airflow 3.x shows without importing the hook; Airflow 2.x ignores those keys and asks the hook's
``get_connection_form_widgets`` / ``get_ui_field_behaviour`` instead. The defaults repeated here
are checked against :mod:`airflow_provider_flowservice._connection` by the tests.
"""

from __future__ import annotations

from typing import Any

_PACKAGE = "airflow_provider_flowservice"
_INTEGRATION = "Adobe Experience Platform Flow Service"
_OPTIONAL_STRING = ["string", "null"]
_DEFAULT_SCOPES = "openid,AdobeID,read_organizations,additional_info.projectedProductContext,session"


def _conn_fields() -> dict[str, Any]:
    return {
        "org_id": {
            "label": "IMS org ID",
            "description": "IMS organization id of the credential, e.g. ABC123DEF456@AdobeOrg (required).",
            "schema": {"type": _OPTIONAL_STRING},
        },
        "sandbox_name": {
            "label": "Sandbox name",
            "description": "Technical name of the sandbox (x-sandbox-name), lowercase; empty means prod.",
            # No default: a saved "prod" (4 characters) reaches Airflow's secrets masker on every
            # connection fetch (it masks all extras by key name, after a length check), which logs
            # "Skipping masking for a secret as it's too short" in every task try. Empty is prod.
            "schema": {"type": _OPTIONAL_STRING},
        },
        "scopes": {
            "label": "Scopes",
            "description": "Scopes of the OAuth Server-to-Server credential, comma-separated.",
            "schema": {
                "type": _OPTIONAL_STRING,
                "default": _DEFAULT_SCOPES,
            },
        },
        # Not "ims_token_url": Airflow masks every extra whose name contains "token".
        "ims_url": {
            "label": "IMS token endpoint URL",
            "description": "Adobe IMS token endpoint; keep the default unless Adobe gave you another.",
            "schema": {"type": _OPTIONAL_STRING, "default": "https://ims-na1.adobelogin.com/ims/token/v3"},
        },
        "access_token": {
            "label": "Static access token (optional)",
            "description": "Use this token as-is instead of fetching one with the client secret "
            "(no renewal; for short tests only).",
            "schema": {"type": _OPTIONAL_STRING, "format": "password"},
        },
    }


def _ui_field_behaviour() -> dict[str, Any]:
    return {
        # Port stays visible: Airflow 3.3's Test button sends port 0 for an empty port and answers
        # "host or port differs" (400); a typed port (443) is sent back as stored.
        "hidden-fields": ["schema"],
        "relabeling": {
            "host": "API base URL",
            "port": "Port (443; needed by Test on Airflow 3.3)",
            "login": "Client ID",
            "password": "Client secret",
        },
        "placeholders": {
            "host": "https://platform.adobe.io",
            "port": "443",
            "login": "0123456789abcdef0123456789abcdef",
            "password": "p8e-client-secret",
            "org_id": "ABC123DEF456@AdobeOrg",
            "sandbox_name": "prod",
            "scopes": _DEFAULT_SCOPES,
            "ims_url": "https://ims-na1.adobelogin.com/ims/token/v3",
            "access_token": "leave empty to fetch tokens with the client ID and secret",
        },
    }


_AEP_URIS = {
    "schemes": ["aep"],
    "handler": "airflow_provider_flowservice.assets.sanitize_uri",
    "factory": "airflow_provider_flowservice.assets.create_asset",
    "to_openlineage_converter": "airflow_provider_flowservice.assets.convert_asset_to_openlineage",
}


def _modules(subpackage: str) -> list[dict[str, Any]]:
    """The ``operators`` / ``sensors`` / ``hooks`` / ``triggers`` entry: one module each."""
    return [{"integration-name": _INTEGRATION, "python-modules": [f"{_PACKAGE}.{subpackage}.flow_service"]}]


def get_provider_info() -> dict[str, Any]:
    """Describe the package to Airflow: its operator, sensor, hook, trigger, connection type and link."""
    from airflow_provider_flowservice import __version__

    return {
        "package-name": "airflow-provider-flowservice",
        "name": _INTEGRATION,
        "description": "On-demand ingestion runs for Adobe Experience Platform dataflows.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://experienceleague.adobe.com/en/docs/experience-platform/sources/"
                "api-tutorials/on-demand",
                "tags": ["service"],
            }
        ],
        "operators": _modules("operators"),
        "sensors": _modules("sensors"),
        "hooks": _modules("hooks"),
        "triggers": _modules("triggers"),
        "connection-types": [
            {
                "connection-type": "adobe_flow_service",
                "hook-class-name": f"{_PACKAGE}.hooks.flow_service.FlowServiceHook",
                "hook-name": _INTEGRATION,
                "conn-fields": _conn_fields(),
                "ui-field-behaviour": _ui_field_behaviour(),
            }
        ],
        "extra-links": [f"{_PACKAGE}.links.flow_service.FlowServiceRunLink"],
        # aep://<org>/<sandbox>/datasets/<id> (docs/lineage.md); 2.11 reads "dataset-uris".
        "asset-uris": [_AEP_URIS],
        "dataset-uris": [_AEP_URIS],
    }
