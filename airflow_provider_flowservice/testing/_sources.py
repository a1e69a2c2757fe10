"""Realistic source and target connections for the emulator's flows (what lineage reads).

Shapes follow Adobe's Flow Service tutorials: a cloud-storage source connection holds a ``path``
whose first segment is the bucket, a table-based (database, warehouse, CRM) source connection a
``tableName``, and a target connection to a dataset ``params.dataSetId`` (docs/lineage.md lists
the sources). The Amazon S3 spec id is Adobe's documented one; the others are stand-ins.
"""

from __future__ import annotations

import uuid
from typing import Any

#: Target connections to the data lake (datasets) use this connection spec.
DATA_LAKE_SPEC_ID = "c604ff05-7f1a-43c0-8e18-33bf874cb11c"

#: source kind -> (connection spec id, flow kind, source connection params)
SOURCE_KINDS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "amazon-s3": (
        "ecadc60c-7455-4d87-84dc-2a0e293d997b",
        "file",
        {"path": "/acme-ingest/crm/exports/customers.csv", "type": "file"},
    ),
    "snowflake": (
        "b2e08744-4f1a-40ce-af30-7abac3e23cf3",
        "table",
        {"tableName": "ANALYTICS.PUBLIC.CUSTOMERS"},
    ),
    "postgresql": ("74a1c565-4e59-48d7-9d67-7c03b8a13137", "table", {"tableName": "public.customers"}),
    "salesforce": ("cfc0fee1-7dc0-40ef-b73e-d8b134c436f5", "table", {"tableName": "Account"}),
}
DEFAULT_SOURCE = {"file": "amazon-s3", "table": "snowflake"}


def check_source_kind(source_kind: str, flow_kind: str) -> str:
    if source_kind not in SOURCE_KINDS:
        raise ValueError(f"source_kind must be one of {sorted(SOURCE_KINDS)}, got {source_kind!r}.")
    if SOURCE_KINDS[source_kind][1] != flow_kind:
        raise ValueError(
            f"source_kind {source_kind!r} is {SOURCE_KINDS[source_kind][1]}-based; the flow is "
            f"kind={flow_kind!r}: pass kind={SOURCE_KINDS[source_kind][1]!r} or another source_kind."
        )
    return source_kind


def connections_for(
    source_kind: str, dataset_id: str, created: int
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(source connection, target connection, source connection spec) JSON for one flow."""
    spec_id, _, params = SOURCE_KINDS[source_kind]
    common = {"createdAt": created, "updatedAt": created, "etag": f'"{uuid.uuid4()}"', "state": "enabled"}
    source = {
        "id": str(uuid.uuid4()),
        "name": f"{source_kind} source connection",
        "baseConnectionId": str(uuid.uuid4()),
        "connectionSpec": {"id": spec_id, "version": "1.0"},
        "data": {"format": "delimited" if "path" in params else "tabular"},
        "params": dict(params),
        **common,
    }
    target = {
        "id": str(uuid.uuid4()),
        "name": "Data lake target connection",
        "connectionSpec": {"id": DATA_LAKE_SPEC_ID, "version": "1.0"},
        "data": {
            "format": "parquet_xdm",
            "schema": {"id": "https://ns.adobe.com/emulator/schemas/customers"},
        },
        "params": {"dataSetId": dataset_id},
        **common,
    }
    spec = {
        "id": spec_id,
        "name": source_kind,
        "providerId": str(uuid.uuid5(uuid.NAMESPACE_URL, source_kind)),
    }
    return source, target, spec


def new_dataset_id(flow_id: str) -> str:
    """A dataset id shaped like Catalog's (24 hex digits), the same for the same flow id.

    Stable, so a DAG scheduled on the dataset (example_dags/example_flow_service_assets.py) can
    name the emulator's dataset before the flow exists.
    """
    return uuid.uuid5(uuid.NAMESPACE_URL, f"aep-emulator-dataset:{flow_id}").hex[:24]
