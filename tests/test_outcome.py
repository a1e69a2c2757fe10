"""Outcome rules and the end-of-run summary, from FlowRun objects and from summary dicts alike."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_flowservice._outcome import (
    apply_outcome,
    count_errors,
    format_errors,
    format_summary,
    run_errors,
    run_status,
)
from airflow_provider_flowservice._window import Window
from airflow_provider_flowservice.exceptions import FlowServiceError, FlowServiceRunError
from airflow_provider_flowservice.models import FlowRun, RunError
from airflow_provider_flowservice.status import FlowRunStatus

RUN_ID = "c35ed8fd-3b7e-4a48-9bd6-3f6c5d7e6a10"
FLOW_ID = "3abea21c-7e36-4be1-bec1-d3bad0e3e0de"


def api_run(status: str, *, errors=(), activity_errors=(), completed=True) -> dict:
    duration = {"startedAtUTC": 1704067200000}
    if completed:
        duration["completedAtUTC"] = 1704067265500
    return {
        "id": RUN_ID,
        "flowId": FLOW_ID,
        "params": {"windowStartTime": "1704067200", "windowEndTime": "1704153600"},
        "metrics": {
            "durationSummary": duration,
            "recordSummary": {"inputRecordCount": 100, "outputRecordCount": 97, "failedRecordCount": 3},
            "fileSummary": {"inputFileCount": 2, "outputFileCount": 2, "failedFileCount": 0},
            "statusSummary": {"status": status, "errors": list(errors)},
        },
        "activities": [{"statusSummary": {"status": status, "errors": list(activity_errors)}}],
    }


E1 = {"code": "CONNECTOR-2001-500", "message": "Source unreachable"}
E2 = {"code": "CONNECTOR-1001-400", "message": "Bad row 17"}


@pytest.fixture(params=["flowrun", "summary"])
def as_input(request):
    """Each test runs on a FlowRun and on its summary() dict (what trigger events carry)."""

    def convert(item: dict):
        run = FlowRun.from_api(item)
        return run if request.param == "flowrun" else run.summary()

    return convert


class Capture(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def logger():
    log = logging.getLogger("test.outcome")
    handler = Capture()
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield log, handler.records
    log.removeHandler(handler)


def test_failed_raises_with_id_status_and_every_error(as_input, logger):
    run = as_input(api_run("failed", errors=[E1], activity_errors=[E2]))
    with pytest.raises(FlowServiceRunError) as err:
        apply_outcome(run, logger=logger[0], run_url="https://ui/run")
    message = str(err.value)
    assert RUN_ID in message and "'failed'" in message and FLOW_ID in message
    assert "CONNECTOR-2001-500: Source unreachable" in message
    assert "CONNECTOR-1001-400: Bad row 17" in message
    assert "https://ui/run" in message
    assert err.value.run_id == RUN_ID
    assert err.value.status == "failed"
    assert [e.code for e in err.value.errors] == ["CONNECTOR-2001-500", "CONNECTOR-1001-400"]


def test_failed_capitalised_and_without_errors(as_input):
    with pytest.raises(FlowServiceRunError, match=r"'Failed'\. Errors: no error details reported"):
        apply_outcome(as_input(api_run("Failed", completed=False)), allow_partial_success=True)


def test_partial_success_raises_by_default(as_input):
    with pytest.raises(FlowServiceRunError) as err:
        apply_outcome(as_input(api_run("partialSuccess", errors=[E2])))
    assert "allow_partial_success=True" in str(err.value)
    assert "CONNECTOR-1001-400" in str(err.value)
    assert err.value.status == "partialSuccess"


def test_partial_success_allowed_warns(as_input, logger):
    log, records = logger
    status = apply_outcome(
        as_input(api_run("partialSuccess", errors=[E2])), allow_partial_success=True, logger=log
    )
    assert status is FlowRunStatus.PARTIAL_SUCCESS
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert RUN_ID in warnings[0] and "CONNECTOR-1001-400: Bad row 17" in warnings[0]


def test_success_with_errors_logs_warning(as_input, logger):
    log, records = logger
    assert apply_outcome(as_input(api_run("success", errors=[E2])), logger=log) is FlowRunStatus.SUCCESS
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "below the dataflow's error threshold" in warnings[0]
    assert "CONNECTOR-1001-400" in warnings[0]


def test_clean_success_is_quiet(as_input, logger):
    log, records = logger
    assert apply_outcome(as_input(api_run("success")), logger=log) is FlowRunStatus.SUCCESS
    assert not [r for r in records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("status", ["scheduled", "inProgress", "somethingNew"])
def test_non_terminal_is_a_caller_error(as_input, status):
    with pytest.raises(FlowServiceError, match="has not finished") as err:
        apply_outcome(as_input(api_run(status, completed=False)))
    assert not isinstance(err.value, FlowServiceRunError)


@pytest.mark.parametrize("status", ["Cancelled", "skipped", "inProgress", ""])
def test_a_completed_run_with_a_status_we_do_not_know_fails_naming_it(as_input, status):
    """Completion reported: the run has ended; a status we cannot judge fails at once, named."""
    item = as_input(api_run(status, errors=[E1]))
    assert run_status(item) is FlowRunStatus.ENDED_UNKNOWN and run_status(item).is_terminal
    with pytest.raises(FlowServiceRunError) as err:
        apply_outcome(item, allow_partial_success=True, run_url="https://ui/run")
    message = str(err.value)
    assert f"with status {status!r}" in message and "does not know" in message
    assert "2024-01-01T00:01:05+00:00" in message  # the completion time it reported
    assert "never reattaches" in message and "CONNECTOR-2001-500" in message and "https://ui/run" in message
    assert err.value.run_id == RUN_ID and err.value.status == status


def test_every_distinct_error_is_shown_and_repeats_are_counted():
    distinct = [RunError(f"C-{i}", f"message {i}.") for i in range(60)]
    repeated = [RunError("CONNECTOR-2001-500", "Source unreachable")] * 37
    text = format_errors([*distinct[:10], *repeated, *distinct[10:]])
    assert all(f"C-{i}: message {i}" in text for i in range(60))  # nothing hidden
    assert text.count("CONNECTOR-2001-500") == 1
    assert "CONNECTOR-2001-500: Source unreachable (x37)" in text
    assert text.index("C-9:") < text.index("CONNECTOR-2001-500") < text.index("C-10:")  # first seen first
    assert "(x" not in text.replace("(x37)", "")
    assert ".." not in text and not text.endswith(".")


def test_error_counts_from_summary_items_and_count_attributes():
    class Counted(RunError):
        count = 5

    assert count_errors([RunError("A", "a"), Counted("A", "a"), RunError("B", "b")]) == [
        (RunError("A", "a"), 6),
        (RunError("B", "b"), 1),
    ]
    summary = {"run_id": "r", "status": "failed", "errors": [{**E1, "count": 12}, E2, E2]}
    with pytest.raises(FlowServiceRunError) as err:
        apply_outcome(summary)
    assert f"{E1['code']}: {E1['message']} (x12)" in str(err.value)
    assert f"{E2['code']}: {E2['message']} (x2)" in str(err.value)
    assert err.value.errors == (RunError(**E1), RunError(**E2))  # distinct, for code that reads them


def test_run_errors_and_status_from_dict_dedupe():
    summary = {"run_id": "r", "status": "FAILED", "errors": [E1, E1, E2, "junk"]}
    assert run_errors(summary) == (RunError(**E1), RunError(**E2))
    assert run_status(summary) is FlowRunStatus.FAILED


def test_format_summary(as_input):
    text = format_summary(as_input(api_run("success")))
    assert text.splitlines()[0] == f"Flow run {RUN_ID} finished: status 'success'"
    assert (
        "2024-01-01T00:00:00+00:00 -> 2024-01-02T00:00:00+00:00 (unix seconds 1704067200 -> 1704153600)"
        in text
    )
    assert "records:  input 100, output 97, failed 3" in text
    assert "files:    input 2, output 2, failed 0" in text
    assert "duration: 65.5 s" in text
    assert "errors" not in text


def test_format_summary_with_explicit_window_and_missing_metrics():
    summary = {"run_id": "r1", "status": "failed", "errors": [E1]}
    text = format_summary(summary, window=Window(10, 20))
    assert "unix seconds 10 -> 20" in text
    assert "records:  input n/a, output n/a, failed n/a" in text
    assert "duration" not in text  # not a line that reads like trouble ("not reported")
    assert "errors:   CONNECTOR-2001-500: Source unreachable" in text
    assert "window:   not reported" in format_summary(summary)
