"""The manual example's window params: JSON-schema ``date-time`` (the form shows date-time pickers,
checked in a real browser by tests/ui) with a pattern, so Airflow refuses a malformed window when
the run is created (``--conf`` or the API), not at run time."""

from __future__ import annotations

import pytest

try:  # Airflow 3.x
    from airflow.sdk.exceptions import ParamValidationError
except ImportError:  # Airflow 2.x
    from airflow.exceptions import ParamValidationError

from airflow_provider_flowservice.version_compat import AIRFLOW_V_3_0_PLUS
from tests.e2e.harness import load_example_dags


@pytest.fixture(scope="module")
def params() -> dict:
    dag = load_example_dags().dags["example_flow_service_manual"]
    return {name: dag.params.get_param(name) for name in ("window_start", "window_end")}


@pytest.mark.parametrize("name", ["window_start", "window_end"])
def test_window_params_are_date_times(params: dict, name: str) -> None:
    param = params[name]
    assert param.schema["format"] == "date-time"
    assert param.resolve("2025-03-01T00:00:00+00:00") == "2025-03-01T00:00:00+00:00"
    assert param.resolve("2025-03-01T00:00:00.000Z") == "2025-03-01T00:00:00.000Z"
    refused = ["yesterday", "2025-03-01"]
    if AIRFLOW_V_3_0_PLUS:
        # Airflow 2.11 lets a failed "date-time" format pass when Python's fromisoformat parses the
        # value (a deprecation warning, and the pattern is then not checked): there the operator
        # refuses a window without an offset when the task starts, before anything is sent.
        refused += ["2025-03-01T00:00:00", "2025-03-01 00:00:00+00:00"]
    for bad in refused:
        # 3.x checks the pattern only; 2.11 also checks the format, and names that first
        with pytest.raises(ParamValidationError, match=r"does not match|is not a 'date-time'"):
            param.resolve(bad)
