"""Every row of the "Errors and their fixes" table (docs/errors.md), run for real.

What the user did -> the message they see.

Each case runs the operator (or the sensor) against the emulator with one bad input and checks
that the message names the bad value and the fix, that input caught before sending sent nothing
at all (not even a token request), and that the "what they see" column of the document is what
the code really says (each ``…``-separated piece of it must be in the message).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_flowservice.exceptions import (
    FlowServiceApiError,
    FlowServiceAuthError,
    FlowServiceConfigError,
    FlowServiceError,
    FlowServiceTimeoutError,
)
from airflow_provider_flowservice.sensors.flow_service import FlowServiceRunSensor
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator
from tests.reliability._support import (
    FAST,
    JAN1,
    JAN2,
    FakeTI,
    context_for,
    execute,
    first_try,
    make_op,
    posts,
)

pytestmark = pytest.mark.timeout(60)

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
DOC_SECTION = "## Errors and their fixes"
UNKNOWN_FLOW = "0b7a3f4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"


@dataclass
class Case:
    """One row: how to provoke it, what must be in the message, and whether it is caught before sending."""

    row: str  # the "what the user did" cell of the errors table of docs/errors.md
    error: type[BaseException]
    names: list[str]  # the bad value, as the message shows it
    fix: list[str]  # the fix, as the message says it
    pre_send: bool
    op: dict[str, Any] = field(default_factory=dict)
    window: tuple[int, int] | None = (JAN1, JAN2)
    conn: dict[str, Any] | None = None
    flow: dict[str, Any] = field(default_factory=dict)


CASES: dict[str, Case] = {
    "flow_id": Case(
        "`flow_id` is not a UUID (a name, or the source connection id)",
        FlowServiceConfigError, ["flow_id 'my-dataflow'"],
        ["Sources > Dataflows", "not the source connection id"], True, op={"flow_id": "my-dataflow"},
    ),
    "inverted": Case(
        "`window_end` before `window_start`",
        FlowServiceConfigError, ["Run window is inverted", "(unix 1704153600)", "(unix 1704067200)"],
        ["must be earlier than its end", "swap them"], True,
        op={"window_start": JAN2, "window_end": JAN1},
    ),
    "empty": Case(
        "`window_start` equal to `window_end`",
        FlowServiceConfigError, ["Run window is empty", "(unix 1704067200)"],
        ["must be earlier than its end"], True, op={"window_start": JAN1, "window_end": JAN1},
    ),
    "milliseconds": Case(
        "window in milliseconds (`1704067200000`)",
        FlowServiceConfigError, ["1704067200000", "looks like unix milliseconds"],
        ["divide by 1000 (e.g. 1704067200)"], True,
        op={"window_start": JAN1 * 1000, "window_end": JAN2 * 1000},
    ),
    "no_offset": Case(
        "ISO string without offset (`2024-01-01T00:00:00`)",
        FlowServiceConfigError, ["window_start '2024-01-01T00:00:00' has no UTC offset"],
        ["add one, e.g. '2024-01-01T00:00:00+00:00'"], True,
        op={"window_start": "2024-01-01T00:00:00", "window_end": JAN2},
    ),
    "template_none": Case(
        "template rendered `None` (param or XCom not set)",
        FlowServiceConfigError, ["window_start is 'None'"],
        ["the template rendered an empty or missing value", "ISO-8601 string with offset"], True,
        op={"window_start": "None", "window_end": JAN2},
    ),
    "template_empty": Case(
        "template rendered an empty string",
        FlowServiceConfigError, ["window_end is ''"], ["the template rendered an empty or missing value"],
        True, op={"window_start": JAN1, "window_end": ""},
    ),
    "template_unrendered": Case(
        "unrendered template (`{{ ... }}` reached the operator)",
        FlowServiceConfigError, ["window_start '{{ params.window_start }}' is an unrendered Jinja template"],
        ["pass the template as the argument itself"], True,
        op={"window_start": "{{ params.window_start }}", "window_end": JAN2},
    ),
    "no_interval": Case(
        "no window and no data interval (Airflow 3 manual run without logical date)",
        FlowServiceConfigError, ["No run window", "data_interval_start / data_interval_end"],
        ["CronDataIntervalTimetable", "pass window_start and window_end explicitly"], True, window=None,
    ),
    "zero_interval": Case(
        "no window, zero-length data interval (Airflow 3 `CronTriggerTimetable`, the cron default)",
        FlowServiceConfigError, ["data interval is empty", "(unix 1704153600)"],
        ['CronDataIntervalTimetable("0 0 * * *", timezone="UTC")', "pass window_start and window_end"], True,
        window=(JAN2, JAN2),
    ),
    "delta_blank": Case(
        "`delta_column` blank",
        FlowServiceConfigError, ["delta_column '  '"], ["leave delta_column unset"], True,
        op={"delta_column": "  "},
    ),
    "org_id": Case(
        "connection without `org_id`",
        FlowServiceConfigError, ["Connection 'my_aep' has no org_id"], ["Set extra org_id", "@AdobeOrg"],
        True, conn={"org_id": None},
    ),
    "client_id": Case(
        "connection without client ID (login)",
        FlowServiceConfigError, ["Connection 'my_aep' has no client ID"], ["Set the connection's login"],
        True, conn={"login": None},
    ),
    "client_secret": Case(
        "connection without client secret (password)",
        FlowServiceConfigError, ["Connection 'my_aep' has no client secret"],
        ["Set the connection's password", "extra access_token"], True, conn={"password": None},
    ),
    "http": Case(
        "host is plain `http://` (not loopback)",
        FlowServiceConfigError, ["host='http://platform.example.com', a plain http URL"],
        ["Use https://platform.example.com", "allow_insecure_http"], True,
        conn={"host": "http://platform.example.com"},
    ),
    "wrong_secret": Case(
        "wrong client secret",
        FlowServiceAuthError, ["Adobe IMS refused the credentials of connection 'my_aep'", "invalid_client"],
        ["check the connection's login (client ID) and password (client secret)"], False,
        conn={"password": "not-the-right-one"},
    ),
    "wrong_org": Case(
        "wrong `org_id`",
        FlowServiceAuthError, ["2002-401", "'OTHER@AdobeOrg'"], ["set extra org_id"], False,
        conn={"org_id": "OTHER@AdobeOrg"},
    ),
    "wrong_sandbox": Case(
        "wrong `sandbox_name`",
        FlowServiceApiError, ["2105-400", "'dev'"], ["set extra sandbox_name"], False,
        conn={"sandbox_name": "dev"},
    ),
    "unknown_flow": Case(
        "unknown flow (a UUID, but not a dataflow of this sandbox)",
        FlowServiceApiError, ["HTTP 400 1430-400", UNKNOWN_FLOW],
        ["check that the flow_id exists in this sandbox"], False, op={"flow_id": UNKNOWN_FLOW},
    ),
    "delta_change": Case(
        "`delta_column` differs from the one the flow already has",
        FlowServiceApiError, ["deltaColumn cannot be changed", "'updated_at'", "'modified_at'"],
        ["cannot be changed afterwards"], False,
        op={"delta_column": "modified_at"}, flow={"delta_column": "updated_at"},
    ),
    "delta_file": Case(
        "`delta_column` on a file-based (cloud storage) flow",
        FlowServiceApiError, ["deltaColumn is for table-based sources only", "reads files"],
        ["drop delta_column"], False,
        op={"delta_column": "updated_at"}, flow={"kind": "file"},
    ),
}


def doc_rows() -> dict[str, list[str]]:
    """The table of docs/errors.md: first cell -> all cells."""
    rows: dict[str, list[str]] = {}
    section = DOC.read_text().split(DOC_SECTION, 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        if not line.startswith("|") or set(line) <= {"|", "-", " ", ":"}:
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        rows[cells[0]] = [c.replace("\\|", "|") for c in cells]
    return rows


def shown_pieces(cell: str) -> list[str]:
    """The message fragments of a "what they see" cell: code spans separated by ``…``."""
    return [p.strip().strip("`").strip() for p in cell.split("…") if p.strip().strip("`").strip()]


def run_case(case: Case, emu: FlowServiceEmulator, define_conn: Callable[..., str]) -> BaseException:
    flow = emu.add_flow(**case.flow)
    conn_id = "flow_service_default"
    if case.conn is not None:
        conn_id = define_conn("my_aep", **case.conn)
    kwargs = {"flow_id": flow, "flow_service_conn_id": conn_id, **case.op}
    done = execute(make_op(**kwargs), context_for(first_try(), window=case.window), raise_error=False)
    assert done.error is not None, f"{case.row}: the task succeeded"
    return done.error


@pytest.mark.parametrize("key", list(CASES))
def test_bad_input_row(key: str, emu: FlowServiceEmulator, define_conn: Callable[..., str]) -> None:
    case = CASES[key]
    error = run_case(case, emu, define_conn)
    message = str(error)
    assert isinstance(error, case.error), f"{type(error).__name__}: {message}"
    for fragment in case.names + case.fix:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    if case.pre_send:
        assert emu.requests == [], "caught before sending, yet something was sent"
    else:
        assert len(posts(emu)) <= 1  # refused once, not retried
    # the document shows what the code says, and says whether it is caught before sending
    row = doc_rows().get(case.row)
    assert row is not None, f"the errors table of docs/errors.md has no row {case.row!r}"
    _, shown, fix, before = row[:4]
    for piece in shown_pieces(shown):
        assert piece in message, f"docs/errors.md shows {piece!r}, the code says {message!r}"
    assert fix
    assert before.lower().startswith("yes" if case.pre_send else "no"), before


def test_every_doc_row_has_a_test() -> None:
    tested = {c.row for c in CASES.values()} | {UNKNOWN_STATUS_ROW, SENSOR_ROW, ALLOW_HTTP_ROW, TLS_ROW}
    assert set(doc_rows()) - {"What you did"} == tested


UNKNOWN_STATUS_ROW = "Flow Service reports a status this provider does not know"


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferrable"])
def test_unknown_status_is_logged_once_and_waited_on_until_the_timeout(
    emu: FlowServiceEmulator, deferrable: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    status = f"awaitingCapacity{uuid.uuid4().hex[:8]}"  # unknown, and new to this process's warn-once set
    flow = emu.add_flow(seconds_to_finish=600, extra_statuses=[status])
    started = time.monotonic()
    done = execute(
        make_op(flow, deferrable=deferrable, timeout=1.0), context_for(first_try()), raise_error=False
    )
    assert time.monotonic() - started < 5  # bounded by the timeout
    error = done.error
    assert isinstance(error, FlowServiceTimeoutError if not deferrable else FlowServiceError), error
    message = str(error)
    assert f"'{status}'" in message and "timeout" in message
    assert "timeout=..." in message  # the fix
    warnings = [r for r in caplog.records if status in r.getMessage() and "does not know" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    # per-run GETs, or the coalesced lists a trigger that knows its flow sends instead
    polled = [r for r in emu.requests if r.method == "GET" and "/flowservice/runs" in r.path]
    assert len(polled) >= 5  # it kept polling through the unknown status
    row = doc_rows()[UNKNOWN_STATUS_ROW]
    for piece in shown_pieces(row[1]):
        assert piece in message or any(piece in r.getMessage() for r in warnings), piece


SENSOR_ROW = "sensor `run_id` from an XCom that was never pushed"


def test_sensor_run_id_not_pushed(emu: FlowServiceEmulator) -> None:
    sensor = FlowServiceRunSensor(task_id="wait", run_id="None", poll_interval=0.05, timeout=5, retry=FAST)
    with pytest.raises(FlowServiceConfigError) as info:
        sensor.execute({"ti": FakeTI()})  # type: ignore[typeddict-item]
    message = str(info.value)
    assert "run_id 'None' is not a flow run id" in message
    assert "xcom_pull(task_ids='create_run')" in message
    assert emu.requests == []
    for piece in shown_pieces(doc_rows()[SENSOR_ROW][1]):
        assert piece in message


ALLOW_HTTP_ROW = "host is plain `http://` on purpose (a trusted test endpoint)"


def test_plain_http_is_accepted_on_opt_in(emu: FlowServiceEmulator, define_conn: Callable[..., str]) -> None:
    from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook

    conn_id = define_conn("aep_http_ok", host="http://platform.example.com", allow_insecure_http="true")
    assert FlowServiceHook(conn_id).settings.base_url == "http://platform.example.com"
    loopback = FlowServiceHook().settings  # the emulator: http on 127.0.0.1 needs no opt-in
    assert loopback.base_url.startswith("http://127.0.0.1:") and not loopback.allow_insecure_http
    assert emu.requests == []
    assert doc_rows()[ALLOW_HTTP_ROW][3].lower().startswith("n/a")


TLS_ROW = "host is `https://` with a certificate the worker does not trust (private CA, self-signed)"


def test_untrusted_certificate_fails_at_once_naming_the_fix(
    emu: FlowServiceEmulator, define_conn: Callable[..., str], self_signed_url: str
) -> None:
    """Permanent: one attempt, no retries, and the message says which extra to set."""
    conn_id = define_conn("my_aep", host=self_signed_url)
    started = time.monotonic()
    slow_retries = {"max_attempts": 2, "initial_backoff": 20}
    op = make_op(emu.add_flow(), flow_service_conn_id=conn_id, retry=slow_retries)
    done = execute(op, context_for(first_try()), raise_error=False)
    assert time.monotonic() - started < 8  # not retried: one retry would wait >= 10 s (20 s, equal jitter)
    error = done.error
    assert isinstance(error, FlowServiceApiError) and error.status_code is None, error
    message = str(error)
    assert self_signed_url.removeprefix("https://") in message  # the bad value
    row = doc_rows()[TLS_ROW]
    for piece in shown_pieces(row[1]):
        assert piece in message, f"docs/errors.md shows {piece!r}, the code says {message!r}"
    assert row[3].lower().startswith("no")
    assert posts(emu) == []  # the run was never created
