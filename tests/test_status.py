"""FlowRunStatus: case-insensitive parsing, terminal groups, unknown = still running + one warning."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_flowservice import status as status_module
from airflow_provider_flowservice.status import TERMINAL_STATUSES, FlowRunStatus, RunState


@pytest.fixture(autouse=True)
def _forget_warnings() -> None:
    status_module._warned.clear()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("scheduled", FlowRunStatus.SCHEDULED),
        ("inProgress", FlowRunStatus.IN_PROGRESS),
        ("INPROGRESS", FlowRunStatus.IN_PROGRESS),
        ("success", FlowRunStatus.SUCCESS),
        ("Success", FlowRunStatus.SUCCESS),
        ("failed", FlowRunStatus.FAILED),
        ("Failed", FlowRunStatus.FAILED),
        (" failed ", FlowRunStatus.FAILED),
        ("partialSuccess", FlowRunStatus.PARTIAL_SUCCESS),
        ("PartialSuccess", FlowRunStatus.PARTIAL_SUCCESS),
    ],
)
def test_known_values_parse_case_insensitively(raw: str, expected: FlowRunStatus) -> None:
    assert FlowRunStatus.parse(raw) is expected


@pytest.mark.parametrize(
    ("member", "terminal", "state"),
    [
        (FlowRunStatus.SCHEDULED, False, RunState.RUNNING),
        (FlowRunStatus.IN_PROGRESS, False, RunState.RUNNING),
        (FlowRunStatus.UNKNOWN, False, RunState.RUNNING),
        (FlowRunStatus.SUCCESS, True, RunState.SUCCEEDED),
        (FlowRunStatus.PARTIAL_SUCCESS, True, RunState.PARTIALLY_SUCCEEDED),
        (FlowRunStatus.FAILED, True, RunState.FAILED),
        (FlowRunStatus.ENDED_UNKNOWN, True, RunState.ENDED_UNKNOWN),
    ],
)
def test_groups(member: FlowRunStatus, terminal: bool, state: RunState) -> None:
    assert member.is_terminal is terminal
    assert member.is_running is not terminal
    assert member.state is state


def test_terminal_set() -> None:
    assert {
        FlowRunStatus.SUCCESS,
        FlowRunStatus.PARTIAL_SUCCESS,
        FlowRunStatus.FAILED,
        FlowRunStatus.ENDED_UNKNOWN,
    } == TERMINAL_STATUSES


@pytest.mark.parametrize("raw", ["queued", "Cancelled", "", None, "success!"])
def test_unknown_values_count_as_running_only_until_the_run_reports_completion(raw: str | None) -> None:
    parsed = FlowRunStatus.parse(raw)
    assert parsed is FlowRunStatus.UNKNOWN
    assert parsed.is_running and not parsed.is_terminal
    ended = FlowRunStatus.parse(raw, completed=True)
    assert ended is FlowRunStatus.ENDED_UNKNOWN
    assert ended.is_terminal and not ended.is_running and ended.state is RunState.ENDED_UNKNOWN


@pytest.mark.parametrize("raw", ["scheduled", "InProgress"])
def test_a_running_status_on_a_completed_run_has_ended(raw: str) -> None:
    assert FlowRunStatus.parse(raw, completed=True) is FlowRunStatus.ENDED_UNKNOWN


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("success", FlowRunStatus.SUCCESS),
        ("Failed", FlowRunStatus.FAILED),
        ("partialSuccess", FlowRunStatus.PARTIAL_SUCCESS),
    ],
)
def test_known_terminal_statuses_keep_their_meaning_with_completion(
    raw: str, expected: FlowRunStatus
) -> None:
    assert FlowRunStatus.parse(raw, completed=True) is expected


@pytest.mark.parametrize("raw", ["unknown", "endedUnknown", "ended_unknown"])
def test_the_pseudo_members_are_not_api_values(raw: str) -> None:
    assert FlowRunStatus.parse(raw) is FlowRunStatus.UNKNOWN


def test_unknown_value_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="airflow_provider_flowservice.status")
    for _ in range(3):
        FlowRunStatus.parse("queued")
    FlowRunStatus.parse("throttled")
    messages = [r.getMessage() for r in caplog.records if r.name == "airflow_provider_flowservice.status"]
    assert len(messages) == 2
    assert "'queued'" in messages[0] and "still running" in messages[0]
    assert "'throttled'" in messages[1]


def test_known_values_do_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="airflow_provider_flowservice.status")
    FlowRunStatus.parse("FAILED")
    assert not [r for r in caplog.records if r.name == "airflow_provider_flowservice.status"]


def test_values_are_the_documented_spelling() -> None:
    assert FlowRunStatus.IN_PROGRESS.value == "inProgress"
    assert FlowRunStatus.PARTIAL_SUCCESS == "partialSuccess"  # str enum: JSON-safe


@pytest.mark.parametrize("raw", [5, 0, 1.5, True, {"value": "success"}, ["success"]])
def test_non_string_values_are_unknown_and_logged(raw: object, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="airflow_provider_flowservice.status")
    parsed = FlowRunStatus.parse(raw)
    assert parsed is FlowRunStatus.UNKNOWN and parsed.is_running
    messages = [r.getMessage() for r in caplog.records if r.name == "airflow_provider_flowservice.status"]
    assert all("not a string" in m and "still running" in m for m in messages)
