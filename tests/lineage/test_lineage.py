"""Lineage pieces: the flow's connections (models, hook, emulator), aep:// URIs, refusals explained,
and lineage failures that never fail a task."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import pytest

from airflow_provider_flowservice._lineage import LineageRecorder, read_lineage, source_dataset_name
from airflow_provider_flowservice._retry import RetryPolicy
from airflow_provider_flowservice.assets import dataset_uri, outlets_with_alias, sanitize_uri
from airflow_provider_flowservice.exceptions import FlowServiceApiError, FlowServiceConfigError
from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook
from airflow_provider_flowservice.models import Flow, FlowConnection
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator

FAST = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02, max_total_seconds=5.0)
W = (1735689600, 1735776000)


def _lineage_gets(em: FlowServiceEmulator) -> list[str]:
    """The Flow Service collections read (a stray request of another process to a reused port, such
    as an Airflow health check, is not ours)."""
    ours = [r for r in em.requests if r.method == "GET" and "/flowservice/" in r.path]
    ours = [r for r in ours if "/runs" not in r.path]
    return [r.path.rsplit("/", 2)[-2] for r in ours]


def test_flow_parses_connection_ids_and_target_dataset() -> None:
    flow = Flow.from_api({"id": "f", "sourceConnectionIds": ["s1", 7, None], "targetConnectionIds": "bad"})
    assert flow.source_connection_ids == ("s1", "7") and flow.target_connection_ids == ()
    raw = {"id": "t", "connectionSpec": {"id": "c"}, "params": {"dataSetId": "d1"}}
    target = FlowConnection.from_api(raw)
    assert (target.dataset_id, target.connection_spec_id) == ("d1", "c")
    assert FlowConnection.from_api({"id": "t", "params": []}).dataset_id is None


@pytest.mark.parametrize(
    ("kind", "source_kind", "namespace", "name"),
    [
        ("file", "amazon-s3", "s3://acme-ingest", "crm/exports/customers.csv"),
        ("table", "snowflake", None, "ANALYTICS.PUBLIC.CUSTOMERS"),
        ("table", "postgresql", None, "public.customers"),
        ("table", "salesforce", None, "Account"),
    ],
)
def test_hook_reads_source_target_and_spec_from_emulator(
    flow_service_conn: FlowServiceEmulator, kind: str, source_kind: str, namespace: str | None, name: str
) -> None:
    em = flow_service_conn
    flow_id = em.add_flow(kind=kind, source_kind=source_kind, dataset_id="5c8c3c555033b814b69f947f")
    lineage = read_lineage(FlowServiceHook(retry=FAST), flow_id, with_source=True)
    assert lineage.source_kind == source_kind
    assert lineage.dataset_id == "5c8c3c555033b814b69f947f"
    assert lineage.dataset_uri == "aep://emulatororg/prod/datasets/5c8c3c555033b814b69f947f"
    got_namespace, got_name = source_dataset_name(lineage)
    expected = namespace or f"aep-source://{lineage.source.base_connection_id}"  # type: ignore[union-attr]
    assert (got_namespace, got_name) == (expected, name)
    assert sorted(_lineage_gets(em)) == ["connectionSpecs", "flows", "sourceConnections", "targetConnections"]


def test_unknown_connection_is_a_404_error(flow_service_conn: FlowServiceEmulator) -> None:
    with pytest.raises(FlowServiceApiError) as info:
        FlowServiceHook(retry=FAST).get_source_connection("0000")
    assert info.value.status_code == 404 and "source connection" in str(info.value)


def test_emulator_refuses_unknown_source_kind_naming_valid_ones(
    flow_service_emulator: FlowServiceEmulator,
) -> None:
    with pytest.raises(ValueError, match="amazon-s3"):
        flow_service_emulator.add_flow(kind="table", source_kind="ftp")
    with pytest.raises(ValueError, match="kind='file'"):
        flow_service_emulator.add_flow(kind="table", source_kind="amazon-s3")


# ----- aep:// URIs


def test_dataset_uri_and_normalizer() -> None:
    assert dataset_uri("ABC123@AdobeOrg", "Prod", "5c8c") == "aep://abc123/prod/datasets/5c8c"
    normalized = sanitize_uri(urlsplit("aep://ABC123/Prod/datasets/5c8c/"))
    assert normalized.geturl() == "aep://abc123/prod/datasets/5c8c"
    for bad in ("aep://abc123/prod/5c8c", "aep:///prod/datasets/x", "aep://abc/prod/tables/x"):
        with pytest.raises(ValueError, match="aep://<org>/<sandbox>/datasets/<dataset id>"):
            sanitize_uri(urlsplit(bad))
    with pytest.raises(FlowServiceConfigError, match="sandbox_name"):
        dataset_uri("ABC@AdobeOrg", "a/b", "x")


def test_airflow_applies_the_registered_normalizer_to_aep_assets() -> None:
    from airflow_provider_flowservice.version_compat import Asset

    assert Asset(uri="AEP://ABC123/Prod/datasets/5c8c").uri == "aep://abc123/prod/datasets/5c8c"


def test_templated_flow_id_needs_a_declared_alias() -> None:
    with pytest.raises(FlowServiceConfigError, match="outlets=\\["):
        outlets_with_alias("{{ params.flow_id }}", None, who="FlowServiceCreateRunOperator")
    with pytest.raises(FlowServiceConfigError, match="sensor learns the flow only from the run"):
        outlets_with_alias(None, [], who="FlowServiceRunSensor")
    (alias,) = outlets_with_alias("abc", None, who="x")
    assert alias.name == "flow_service:abc"


# ----- a lineage failure never fails the task; logged once; no retries of the reads


def test_lineage_failure_is_logged_once_and_never_raises(
    flow_service_conn: FlowServiceEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    em = flow_service_conn
    flow_id = em.add_flow(kind="table")
    em.inject("500", path="/targetConnections/", times=10)
    recorder = LineageRecorder()
    recorder.finished({"run_id": "r", "flow_id": flow_id, "status": "success"})
    log = logging.getLogger("test-lineage")
    with caplog.at_level(logging.WARNING, logger="test-lineage"):
        recorder.emit_asset_event({"outlet_events": {}}, [], FlowServiceHook(retry=FAST), log)
        recorder.openlineage(FlowServiceHook(retry=FAST), log, flow_id=flow_id, run_id="r", failed=False)
    warnings = [r for r in caplog.records if "Lineage for flow" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    assert _lineage_gets(em).count("flows") == 1  # no second attempt at the lineage after the failure


# ----- refusals explained


@pytest.mark.parametrize(
    ("state", "on_demand", "expected"),
    [
        ("disabled", True, "is 'disabled': enable the dataflow in Experience Platform"),
        ("deleted", True, "does not exist in sandbox 'prod': it was deleted"),
        ("enabled", False, "on-demand runs are for batch source dataflows only"),
    ],
)
def test_refused_create_says_what_state_the_flow_is_in(
    flow_service_conn: FlowServiceEmulator, state: str, on_demand: bool, expected: str
) -> None:
    em = flow_service_conn
    flow_id = em.add_flow(kind="table", on_demand=on_demand, name="CRM customers")
    em.set_flow_state(flow_id, state)
    with pytest.raises(FlowServiceApiError) as info:
        FlowServiceHook(retry=FAST).create_run(flow_id, *W)
    assert expected in str(info.value), str(info.value)
    assert flow_id in str(info.value)


def test_refusal_of_an_enabled_flow_for_a_request_reason_adds_nothing_about_the_flow(
    flow_service_conn: FlowServiceEmulator,
) -> None:
    em = flow_service_conn
    flow_id = em.add_flow(kind="file")
    with pytest.raises(FlowServiceApiError) as info:
        FlowServiceHook(retry=FAST).create_run(flow_id, *W, delta_column="updated_at")
    assert "deltaColumn is for table-based sources only" in str(info.value)
    assert "enable the dataflow" not in str(info.value) and "deleted" not in str(info.value)
