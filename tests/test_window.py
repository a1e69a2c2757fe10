"""Window resolution and input validation: every input form, every error names the value and the fix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pendulum
import pytest

from airflow_provider_flowservice._window import (
    Window,
    resolve_window,
    resolve_window_from_context,
    to_unix_seconds,
    validate_delta_column,
    validate_flow_id,
    validate_start_time,
)
from airflow_provider_flowservice.exceptions import FlowServiceConfigError

JAN1 = 1704067200  # 2024-01-01T00:00:00Z
JAN2 = JAN1 + 86400


class TestToUnixSeconds:
    @pytest.mark.parametrize(
        "value",
        [
            datetime(2024, 1, 1, tzinfo=UTC),
            datetime(2024, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1))),
            pendulum.datetime(2024, 1, 1, tz="UTC"),
            pendulum.datetime(2023, 12, 31, 19, tz="America/New_York"),
            "2024-01-01T00:00:00+00:00",
            "2024-01-01T00:00:00Z",
            "2024-01-01 02:00:00+02:00",
            "2023-12-31T16:00:00-08:00",
            "2024-01-01T00:00:00.000+00:00",
            JAN1,
            float(JAN1),
            str(JAN1),
            f" {JAN1} ",
            f"{JAN1}.0",
        ],
    )
    def test_accepted_forms(self, value):
        assert to_unix_seconds(value, "window_start") == JAN1

    def test_fractional_seconds_round_down(self):
        assert to_unix_seconds(JAN1 + 0.9, "window_start") == JAN1
        assert to_unix_seconds(datetime(2024, 1, 1, 0, 0, 0, 999999, tzinfo=UTC), "x") == JAN1

    def test_naive_iso_string_names_value_and_fix(self):
        with pytest.raises(FlowServiceConfigError) as err:
            to_unix_seconds("2024-01-01T00:00:00", "window_start")
        assert str(err.value) == (
            "window_start '2024-01-01T00:00:00' has no UTC offset; add one, e.g. '2024-01-01T00:00:00+00:00'."
        )

    def test_naive_date_only_string(self):
        with pytest.raises(
            FlowServiceConfigError,
            match=r"window_end '2024-01-02' has no UTC offset.*"
            r"'2024-01-02T00:00:00\+00:00'",
        ):
            to_unix_seconds("2024-01-02", "window_end")

    def test_naive_datetime(self):
        with pytest.raises(
            FlowServiceConfigError,
            match=r"window_start '2024-01-01T00:00:00' is a naive "
            r"datetime.*tzinfo=timezone.utc",
        ):
            to_unix_seconds(datetime(2024, 1, 1), "window_start")

    @pytest.mark.parametrize("value", [JAN1 * 1000, str(JAN1 * 1000), float(JAN1 * 1000)])
    def test_milliseconds_detected(self, value):
        with pytest.raises(FlowServiceConfigError) as err:
            to_unix_seconds(value, "window_start")
        message = str(err.value)
        assert "window_start" in message
        assert str(JAN1 * 1000) in message
        assert "milliseconds" in message
        assert "divide by 1000" in message
        assert str(JAN1) in message  # the corrected value

    @pytest.mark.parametrize("value", [-1, "-5", datetime(1960, 1, 1, tzinfo=UTC)])
    def test_negative(self, value):
        with pytest.raises(FlowServiceConfigError, match=r"window_end .* before 1970"):
            to_unix_seconds(value, "window_end")

    def test_absurd_future(self):
        # the documentation's own typo: 16515859567 is year 2493
        with pytest.raises(FlowServiceConfigError, match=r"window_end 16515859567 is after 2200.*2493"):
            to_unix_seconds(16515859567, "window_end")

    @pytest.mark.parametrize("value", ["None", "", "  ", "null", "nan"])
    def test_empty_template_results(self, value):
        with pytest.raises(FlowServiceConfigError) as err:
            to_unix_seconds(value, "window_start")
        message = str(err.value)
        assert message.startswith(f"window_start is {value!r}")
        assert "template" in message
        assert "2024-01-01T00:00:00+00:00" in message

    def test_unrendered_template(self):
        with pytest.raises(FlowServiceConfigError) as err:
            to_unix_seconds("{{ params.window_start }}", "window_start")
        assert "'{{ params.window_start }}'" in str(err.value)
        assert "unrendered Jinja template" in str(err.value)

    @pytest.mark.parametrize("value", ["yesterday", "2024-13-01T00:00:00+00:00", "1e400x"])
    def test_unparseable(self, value):
        with pytest.raises(FlowServiceConfigError, match=r"window_start .* neither unix seconds nor an ISO"):
            to_unix_seconds(value, "window_start")

    @pytest.mark.parametrize("value", [True, [JAN1], {"t": 1}, object()])
    def test_wrong_types(self, value):
        with pytest.raises(FlowServiceConfigError, match=r"^window_start "):
            to_unix_seconds(value, "window_start")

    def test_infinite(self):
        with pytest.raises(FlowServiceConfigError, match="not a finite number"):
            to_unix_seconds(float("inf"), "window_start")


class TestResolveWindow:
    def test_explicit_values(self):
        window = resolve_window(JAN1, "2024-01-02T00:00:00+00:00")
        assert window == Window(JAN1, JAN2)

    def test_defaults_to_data_interval(self):
        window = resolve_window(
            data_interval_start=pendulum.datetime(2024, 1, 1, tz="UTC"),
            data_interval_end=pendulum.datetime(2024, 1, 2, tz="UTC"),
        )
        assert window == Window(JAN1, JAN2)

    def test_explicit_overrides_one_end(self):
        window = resolve_window(
            None,
            JAN1 + 3600,
            data_interval_start=pendulum.datetime(2024, 1, 1, tz="UTC"),
            data_interval_end=pendulum.datetime(2024, 1, 2, tz="UTC"),
        )
        assert window == Window(JAN1, JAN1 + 3600)

    def test_from_context(self):
        context = {
            "data_interval_start": pendulum.datetime(2024, 1, 1, tz="UTC"),
            "data_interval_end": pendulum.datetime(2024, 1, 2, tz="UTC"),
        }
        assert resolve_window_from_context(None, None, context) == Window(JAN1, JAN2)
        assert resolve_window_from_context(JAN2, JAN2 + 60, context) == Window(JAN2, JAN2 + 60)

    def test_inverted_names_both_values_utc_and_unix(self):
        with pytest.raises(FlowServiceConfigError) as err:
            resolve_window(JAN2, JAN1)
        message = str(err.value)
        assert "inverted" in message
        for part in (
            "window_start",
            "window_end",
            "2024-01-02T00:00:00+00:00",
            "2024-01-01T00:00:00+00:00",
            str(JAN1),
            str(JAN2),
        ):
            assert part in message

    def test_explicit_empty_window(self):
        with pytest.raises(FlowServiceConfigError, match=r"empty: window_start .*is equal to window_end"):
            resolve_window(JAN1, str(JAN1))

    def test_zero_length_data_interval_airflow3_message(self):
        moment = pendulum.datetime(2024, 1, 1, tz="UTC")
        with pytest.raises(FlowServiceConfigError) as err:
            resolve_window(data_interval_start=moment, data_interval_end=moment)
        message = str(err.value)
        assert "data interval is empty" in message
        assert "2024-01-01T00:00:00+00:00" in message and str(JAN1) in message
        assert "CronTriggerTimetable" in message
        assert 'schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC")' in message
        assert "window_start" in message and "window_end" in message
        assert "params" in message

    def test_missing_data_interval(self):
        with pytest.raises(FlowServiceConfigError) as err:
            resolve_window(data_interval_start=None, data_interval_end=None)
        message = str(err.value)
        assert "data_interval_start / data_interval_end" in message
        assert "logical date" in message
        assert "CronDataIntervalTimetable" in message
        assert "window_start" in message

    def test_error_names_the_data_interval_value(self):
        with pytest.raises(
            FlowServiceConfigError, match=r"^data_interval_start '2024-01-01T00:00:00' is a naive"
        ):
            resolve_window(None, JAN2, data_interval_start=datetime(2024, 1, 1))

    def test_describe(self):
        text = Window(JAN1, JAN2).describe()
        assert text == (
            "2024-01-01T00:00:00+00:00 -> 2024-01-02T00:00:00+00:00 (unix seconds 1704067200 -> 1704153600, "
            "86400 s)"
        )

    def test_window_is_frozen(self):
        window = Window(JAN1, JAN2)
        with pytest.raises(AttributeError):
            window.start = 0  # type: ignore[misc]


class TestOtherValidation:
    def test_flow_id_ok(self):
        assert (
            validate_flow_id(" 3abea21c-7e36-4be1-bec1-d3bad0e3e0de ")
            == "3abea21c-7e36-4be1-bec1-d3bad0e3e0de"
        )

    @pytest.mark.parametrize(
        "value", ["", "None", "my-flow", "3abea21c7e364be1bec1d3bad0e3e0de", "{{ params.flow }}", None, 42]
    )
    def test_flow_id_bad(self, value):
        with pytest.raises(FlowServiceConfigError) as err:
            validate_flow_id(value)
        message = str(err.value)
        assert f"flow_id {value!r}" in message
        assert "Sources > Dataflows" in message
        assert "UUID" in message

    def test_delta_column(self):
        assert validate_delta_column(None) is None
        assert validate_delta_column(" updated_at ") == "updated_at"

    @pytest.mark.parametrize("value", ["", "   ", "None", 5])
    def test_delta_column_bad(self, value):
        with pytest.raises(FlowServiceConfigError, match=rf"delta_column {value!r}.*column name"):
            validate_delta_column(value)

    def test_start_time(self):
        assert validate_start_time(None) is None
        assert validate_start_time("2024-01-01T00:00:00Z") == JAN1
        with pytest.raises(FlowServiceConfigError, match=r"start_time .*milliseconds"):
            validate_start_time(JAN1 * 1000)
        with pytest.raises(
            FlowServiceConfigError, match="start_time '2024-01-01T00:00:00' has no UTC offset"
        ):
            validate_start_time("2024-01-01T00:00:00")
