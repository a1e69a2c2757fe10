"""models: lenient parsing of the documented run and flow shapes into typed, JSON-safe values."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_flowservice.models import CreatedRun, Flow, FlowRun, RunError
from airflow_provider_flowservice.status import FlowRunStatus

DOC_RUN: dict[str, Any] = {
    "id": "65b7b5c9-2a8c-4a6e-b6e5-7b2b6b6d5f0c",
    "flowId": "3abea21c-7e36-4be1-bec1-d3bad0e3e0de",
    "createdAt": 1651585000000,
    "etag": '"0a00f5a7-0000-0200-0000-62715b5a0000"',
    "params": {"windowStartTime": "1651584991", "windowEndTime": "1651585956"},
    "metrics": {
        "durationSummary": {"startedAtUTC": 1651585010000, "completedAtUTC": 1651585070500},
        "sizeSummary": {"inputBytes": 1024, "outputBytes": -1},
        "recordSummary": {
            "inputRecordCount": 10,
            "outputRecordCount": 8,
            "failedRecordCount": 2,
            "skippedRecordCount": 0,
        },
        "fileSummary": {"inputFileCount": 1, "outputFileCount": 1, "failedFileCount": 0},
        "statusSummary": {
            "status": "Failed",
            "errors": [{"code": "CONNECTOR-2001-500", "message": "Source unreachable"}],
        },
    },
    "activities": [
        {
            "statusSummary": {
                "errors": [{"code": "CONNECTOR-2001-500", "message": "Source unreachable"}],
                "extensions": {"errors": [{"code": "CONNECTOR-1001-500", "message": "Bad row"}]},
            },
            "durationSummary": {"extensions": {"windowStart": 1651584991000, "windowEnd": 1651585956000}},
        }
    ],
}


def test_full_run() -> None:
    run = FlowRun.from_api(DOC_RUN)
    assert run.id == DOC_RUN["id"] and run.flow_id == DOC_RUN["flowId"]
    assert run.status is FlowRunStatus.FAILED and run.raw_status == "Failed"
    assert run.errors == (
        RunError("CONNECTOR-2001-500", "Source unreachable"),  # de-duplicated across places
        RunError("CONNECTOR-1001-500", "Bad row"),
    )
    assert (run.window_start, run.window_end) == (1651584991, 1651585956)
    assert run.created_at == 1651585000000
    assert run.duration_seconds == 60.5
    assert run.etag == DOC_RUN["etag"]


def test_window_from_activities_when_params_are_missing() -> None:
    item = {k: v for k, v in DOC_RUN.items() if k != "params"}
    run = FlowRun.from_api(item)
    assert (run.window_start, run.window_end) == (1651584991, 1651585956)


def test_minimal_run_is_lenient() -> None:
    run = FlowRun.from_api({"id": "r1"})
    assert run.id == "r1" and run.flow_id is None
    assert run.status is FlowRunStatus.UNKNOWN and run.raw_status is None
    assert run.errors == () and run.window_start is None and run.duration_seconds is None
    assert run.summary()["records"] == {} and run.summary()["duration_seconds"] is None


def test_failed_run_without_completion_time() -> None:
    item = json.loads(json.dumps(DOC_RUN))
    del item["metrics"]["durationSummary"]["completedAtUTC"]
    assert FlowRun.from_api(item).duration_seconds is None


def test_odd_values_do_not_raise() -> None:
    item = {
        "id": 5,
        "params": {"windowStartTime": "not-a-number"},
        "metrics": {"statusSummary": {"status": "success", "errors": "not-a-list"}},
        "activities": ["oops", {"statusSummary": {"errors": [None, {"message": "only message"}]}}],
    }
    run = FlowRun.from_api(item)
    assert run.id == "5" and run.status is FlowRunStatus.SUCCESS
    assert run.window_start is None
    assert run.errors == (RunError("", "only message"),)
    assert str(run.errors[0]) == "only message"
    assert str(RunError("C-1", "m")) == "C-1: m"


@pytest.mark.parametrize("status", [5, None, {"value": "success"}, ["failed"], 1.5])
def test_a_status_that_is_not_a_string_is_unknown(status: Any) -> None:
    item = json.loads(json.dumps(DOC_RUN))
    item["metrics"]["statusSummary"]["status"] = status
    del item["metrics"]["durationSummary"]["completedAtUTC"]
    run = FlowRun.from_api(item)
    assert run.status is FlowRunStatus.UNKNOWN and run.status.is_running
    assert run.raw_status is None or isinstance(run.raw_status, str)
    json.dumps(run.summary())


@pytest.mark.parametrize("status", ["Cancelled", "skipped", "inProgress", "scheduled", None, 5])
def test_a_run_that_reports_completion_has_ended_whatever_its_status(status: Any) -> None:
    item = json.loads(json.dumps(DOC_RUN))
    item["metrics"]["statusSummary"]["status"] = status
    run = FlowRun.from_api(item)
    assert run.status is FlowRunStatus.ENDED_UNKNOWN and run.status.is_terminal
    assert run.summary()["completed_at"] == 1651585070500


@pytest.mark.parametrize("completed", [0, -1, None, "n/a"])
def test_a_placeholder_completion_time_is_not_completion(completed: Any) -> None:
    item = json.loads(json.dumps(DOC_RUN))
    item["metrics"]["statusSummary"]["status"] = "Cancelled"
    item["metrics"]["durationSummary"]["completedAtUTC"] = completed
    assert FlowRun.from_api(item).status is FlowRunStatus.UNKNOWN


@pytest.mark.parametrize(
    "metrics",
    [
        {"statusSummary": "failed"},
        {"statusSummary": ["failed"]},
        {"statusSummary": 5},
        "not-an-object",
        {"durationSummary": "x", "recordSummary": [1], "fileSummary": "y", "sizeSummary": 3},
    ],
)
def test_odd_metrics_shapes_do_not_raise(metrics: Any) -> None:
    run = FlowRun.from_api({"id": "r", "metrics": metrics, "params": "x", "activities": {"a": 1}})
    assert run.status is FlowRunStatus.UNKNOWN
    assert run.record_summary == {} and run.duration_seconds is None and run.window_start is None
    json.dumps(run.summary())


def test_odd_activity_shapes_do_not_raise() -> None:
    item = {
        "id": "r",
        "activities": [
            {"statusSummary": "x", "durationSummary": {"extensions": "y"}},
            {"statusSummary": {"extensions": ["z"]}, "durationSummary": []},
        ],
    }
    assert FlowRun.from_api(item).errors == ()


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (1651584991000, 1651585956000),  # milliseconds (the OpenAPI calls them that once)
        ("1651584991000", "1651585956000"),
        ("1651584991", "1651585956"),  # seconds, as documented
        (1651584991, 1651585956),
        ("1651584991.0", "1651585956.0"),
    ],
)
def test_window_params_in_milliseconds_or_seconds_give_seconds(start: Any, end: Any) -> None:
    from airflow_provider_flowservice.hooks._api import matches_window

    item = {"id": "r", "flowId": "f", "params": {"windowStartTime": start, "windowEndTime": end}}
    run = FlowRun.from_api(item)
    assert (run.window_start, run.window_end) == (1651584991, 1651585956)
    assert matches_window(run, "f", 1651584991, 1651585956)


@pytest.mark.parametrize("value", [True, False, None, "", "soon", [1], {"ms": 1}, 1e400])
def test_times_that_are_not_numbers_are_none(value: Any) -> None:
    """The int fast path must not let a JSON boolean (an int subclass) or anything odd through."""
    item = {"id": "r", "createdAt": value, "params": {"windowStartTime": value},
            "metrics": {"durationSummary": {"startedAtUTC": value, "completedAtUTC": value}}}
    run = FlowRun.from_api(item)
    assert (run.created_at, run.window_start, run.started_at, run.completed_at) == (None,) * 4
    assert run.status is FlowRunStatus.UNKNOWN  # no completion time: still running


def test_odd_flow_shapes_do_not_raise() -> None:
    flow = Flow.from_api(
        {"id": "f", "transformations": ["x", None, {"params": "y"}], "flowSpec": "z", "scheduleParams": 1}
    )
    assert flow.delta_column is None and flow.flow_spec_id is None and flow.schedule_frequency is None


def test_success_with_errors_keeps_them() -> None:
    item = json.loads(json.dumps(DOC_RUN))
    item["metrics"]["statusSummary"]["status"] = "success"
    run = FlowRun.from_api(item)
    assert run.status is FlowRunStatus.SUCCESS and len(run.errors) == 2


def test_summary_is_json_safe_and_small() -> None:
    summary = FlowRun.from_api(DOC_RUN).summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary == {
        "run_id": DOC_RUN["id"],
        "flow_id": DOC_RUN["flowId"],
        "status": "Failed",
        "errors": [
            {"code": "CONNECTOR-2001-500", "message": "Source unreachable"},
            {"code": "CONNECTOR-1001-500", "message": "Bad row"},
        ],
        "window_start": 1651584991,
        "window_end": 1651585956,
        "records": {"inputRecordCount": 10, "outputRecordCount": 8, "failedRecordCount": 2},
        "files": {"inputFileCount": 1, "outputFileCount": 1, "failedFileCount": 0},
        "bytes": {"inputBytes": 1024, "outputBytes": -1},
        "duration_seconds": 60.5,
        "completed_at": 1651585070500,
    }


def test_flow() -> None:
    item = {
        "id": "f1",
        "name": "Orders",
        "state": "enabled",
        "etag": '"e"',
        "flowSpec": {"id": "spec-1", "version": "1.0"},
        "scheduleParams": {"startTime": "1651584991", "frequency": "once"},
        "transformations": [
            {"name": "Mapping", "params": {"mappingId": "m"}},
            {"name": "Copy", "params": {"deltaColumn": {"name": "updated_at", "dateFormat": "YYYY-MM-DD"}}},
        ],
    }
    flow = Flow.from_api(item)
    assert flow == Flow(
        id="f1",
        name="Orders",
        state="enabled",
        flow_spec_id="spec-1",
        delta_column="updated_at",
        schedule_frequency="once",
        etag='"e"',
    )


def test_flow_without_optional_parts() -> None:
    flow = Flow.from_api({"id": "f2", "transformations": [None, {"params": {"deltaColumn": "x"}}]})
    assert (flow.name, flow.state, flow.flow_spec_id, flow.delta_column, flow.schedule_frequency) == (
        None,
        None,
        None,
        None,
        None,
    )


def test_created_run_defaults() -> None:
    created = CreatedRun(run_id="r1")
    assert created.etag is None and created.adopted is False
