"""Airflow Assets (Datasets on 2.11) for Experience Platform datasets filled by flow runs.

An ingestion writes to a dataset; naming that dataset as an asset lets a downstream DAG be
scheduled on it. The URI is ``aep://<org>/<sandbox>/datasets/<dataset id>``: ``<org>`` is the IMS
org id without ``@AdobeOrg`` (an ``@`` in a URI's authority means "user info", which Airflow
strips), lowercase. Dataset ids are unique within an org's sandbox, so the three parts name one
dataset. The target dataset is known only once the flow is read, so the operator emits through an
asset alias (:func:`flow_alias`); docs/lineage.md shows the pattern.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

from airflow_provider_flowservice.exceptions import FlowServiceConfigError

if TYPE_CHECKING:
    from airflow.providers.common.compat.openlineage.facet import Dataset as OpenLineageDataset

SCHEME = "aep"
_ORG_SUFFIX = "@adobeorg"


def org_host(org_id: str) -> str:
    """The URI authority for an IMS org id: ``ABC123@AdobeOrg`` -> ``abc123``."""
    org = org_id.strip().lower()
    return org[: -len(_ORG_SUFFIX)] if org.endswith(_ORG_SUFFIX) else org


def dataset_uri(org_id: str, sandbox_name: str, dataset_id: str) -> str:
    """``aep://<org>/<sandbox>/datasets/<dataset id>`` for a dataset in Experience Platform."""
    parts = {
        "org_id": org_host(org_id),
        "sandbox_name": sandbox_name.strip().lower(),
        "dataset_id": dataset_id,
    }
    for name, value in parts.items():
        if not value or "/" in value or "@" in value:
            raise FlowServiceConfigError(
                f"{name}={value!r} cannot be part of an aep:// dataset URI: it must be non-empty, with "
                "no '/' or '@' (e.g. org_id 'ABC123@AdobeOrg', sandbox_name 'prod', dataset_id "
                "'5c8c3c555033b814b69f947f')."
            )
    return f"{SCHEME}://{parts['org_id']}/{parts['sandbox_name']}/datasets/{dataset_id.strip()}"


def dataset_asset(org_id: str, sandbox_name: str, dataset_id: str) -> Any:
    """The Asset (2.11: Dataset) for a dataset, e.g. for ``schedule=[dataset_asset(...)]``."""
    from airflow_provider_flowservice.version_compat import Asset

    return Asset(uri=dataset_uri(org_id, sandbox_name, dataset_id))


def flow_alias(flow_id: str) -> Any:
    """The asset alias (2.11: DatasetAlias) the operator emits a flow's dataset through by default."""
    from airflow_provider_flowservice.version_compat import AssetAlias

    return AssetAlias(name=f"flow_service:{flow_id}")


# ----- provider info: asset-uris / dataset-uris ----------------------------------------------------


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Normalize an ``aep://`` URI (lowercase org and sandbox); refuse one that names no dataset."""
    segments = uri.path.strip("/").split("/")
    if not uri.netloc or len(segments) != 3 or segments[1] != "datasets" or not all(segments):
        raise ValueError(
            f"aep:// URI {uri.geturl()!r} must be aep://<org>/<sandbox>/datasets/<dataset id>, e.g. "
            "aep://abc123/prod/datasets/5c8c3c555033b814b69f947f."
        )
    path = f"/{segments[0].lower()}/datasets/{segments[2]}"
    return uri._replace(netloc=uri.netloc.lower(), path=path, query="", fragment="")


def create_asset(*, org_id: str, sandbox_name: str, dataset_id: str) -> Any:
    """Factory registered for the ``aep`` scheme."""
    return dataset_asset(org_id, sandbox_name, dataset_id)


def convert_asset_to_openlineage(asset: Any, lineage_context: Any = None) -> OpenLineageDataset:
    """An ``aep://`` asset as an OpenLineage dataset: ``aep://<org>``, ``<sandbox>/datasets/<id>``."""
    from airflow.providers.common.compat.openlineage.facet import Dataset as OpenLineageDataset

    parts = urlsplit(asset.uri)
    return OpenLineageDataset(namespace=f"{SCHEME}://{parts.netloc}", name=parts.path.lstrip("/"))


# ----- emission ------------------------------------------------------------------------------------


def is_alias(outlet: Any) -> bool:
    from airflow_provider_flowservice.version_compat import AssetAlias

    return isinstance(outlet, AssetAlias)


def outlets_with_alias(flow_id: Any, outlets: Any, *, who: str) -> list[Any]:
    """The task's outlets, plus :func:`flow_alias` when the author declared no alias or aep:// asset.

    Called at DAG parse time (operator ``__init__``) when asset events are on: Airflow only
    emits through outlets declared on the task.
    """
    declared = list(outlets) if isinstance(outlets, Sequence) else ([] if outlets is None else [outlets])
    if any(is_alias(o) or str(getattr(o, "uri", "")).startswith(f"{SCHEME}://") for o in declared):
        return declared
    if not isinstance(flow_id, str) or "{{" in flow_id or not flow_id.strip():
        why = (
            "the sensor learns the flow only from the run"
            if flow_id is None
            else f"flow_id {flow_id!r} is not a fixed id to name one after"
        )
        raise FlowServiceConfigError(
            f"{who}: emit_asset_events=True needs an asset alias to emit through, and {why}. "
            "Declare it: outlets=[flow_alias('<flow id>')] or outlets=[AssetAlias('my_ingestion')] "
            "(2.11: DatasetAlias), and schedule the downstream DAG on that alias or on the dataset's "
            "aep:// asset."
        )
    return [*declared, flow_alias(flow_id.strip())]


def emit(
    context: Mapping[str, Any], outlets: Sequence[Any], uri: str, extra: dict[str, Any], log: Any
) -> int:
    """Attach an event for ``uri`` with ``extra`` to the task's outlets; returns how many were set.

    Each alias gets ``add(asset, extra)``; an ``aep://`` asset declared with the same URI gets the
    extra. Airflow records them when the task succeeds.
    """
    from airflow_provider_flowservice.version_compat import Asset

    events = context.get("outlet_events")
    if events is None:
        log.warning("No outlet_events in the task context: no asset event for %s.", uri)
        return 0
    target = Asset(uri=uri)
    done = 0
    for outlet in outlets:
        if is_alias(outlet):
            events[outlet].add(target, extra=extra)
            done += 1
        elif getattr(outlet, "uri", None) == target.uri:
            events[outlet].extra.update(extra)
            done += 1
        elif str(getattr(outlet, "uri", "")).startswith(f"{SCHEME}://"):
            log.warning(
                "Outlet %s is not the dataset this flow wrote (%s): no event for it. Fix the outlet's "
                "dataset id, or declare an AssetAlias instead.",
                outlet.uri,
                target.uri,
            )
    return done


__all__ = ["SCHEME", "dataset_asset", "dataset_uri", "flow_alias"]
