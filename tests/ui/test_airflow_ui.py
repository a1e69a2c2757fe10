"""What a user clicks in Airflow 3.x's UI, in a real Chromium: the connection form and its Test
button (see conftest.py).

The tests share one deployment; each saves a screenshot when it fails, and the first writes the
docs' screenshot ``docs/img/connection-form.png`` when it passes.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from airflow_provider_flowservice._connection import DEFAULT_IMS_TOKEN_URL
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator
from tests.system._airflow_services import AirflowDeployment
from tests.ui.conftest import DOCS_IMG

# Generous: the first test also pays for starting Airflow, minutes on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(900)

#: Airflow's Test button tests a copy of the connection under a random 8-letter id.
TEMPORARY_ID = re.compile(r"'[A-Za-z0-9]{8}'")


def _add_connection(
    page: Any, base_url: str, emulator: FlowServiceEmulator, conn_id: str, secret: str
) -> None:
    """Fill the Add Connection form as a user does: every default left as shown."""
    page.goto(base_url + "/connections", wait_until="domcontentloaded")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.locator("input[name=connection_id]").fill(conn_id)
    page.get_by_role("combobox").fill("Adobe Experience Platform")
    page.get_by_role("option", name="Adobe Experience Platform Flow Service").click()
    dialog.locator("input[name=host]").fill(emulator.url)
    dialog.locator("input[name=port]").fill(emulator.url.rsplit(":", 1)[1])
    dialog.locator("input[name=login]").fill(emulator.client_id)
    dialog.locator("input[name=password]").fill(secret)
    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    dialog.locator("#element_org_id").fill(emulator.org_id)
    # The defaults the form shows are real values, never Airflow's mask.
    assert dialog.locator("#element_ims_url").input_value() == DEFAULT_IMS_TOKEN_URL
    assert dialog.locator("#element_sandbox_name").input_value() == "prod"
    for field in dialog.locator("input").all():
        assert field.input_value() != "***"
    return None


def _test_button(page: Any, conn_id: str) -> dict[str, Any]:
    """Click the connection list's Test button; the API's answer (also shown in a toast)."""
    row = page.get_by_role("row").filter(has_text=conn_id)
    with page.expect_response(lambda r: r.url.endswith("/api/v2/connections/test")) as answer:
        row.get_by_role("button", name="Test Connection").click()
    response = answer.value
    body = response.json()
    assert response.status == 200, body
    return dict(body)


def _stored_connection(airflow: AirflowDeployment, conn_id: str) -> tuple[Any, ...]:
    rows = airflow.query("SELECT host, port, extra FROM connection WHERE conn_id = ?", (conn_id,))
    assert len(rows) == 1, rows
    return rows[0]


def test_connection_made_in_the_form_saves_real_defaults_and_passes_test(
    page: Any, base_url: str, emulator: FlowServiceEmulator, airflow: AirflowDeployment
) -> None:
    _add_connection(page, base_url, emulator, "aep_form", emulator.client_secret)
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    page.get_by_role("dialog").screenshot(path=str(DOCS_IMG / "connection-form.png"))
    page.get_by_role("dialog").get_by_role("button", name="Save").click()
    page.get_by_role("row").filter(has_text="aep_form").wait_for()

    host, port, extra = _stored_connection(airflow, "aep_form")
    stored = json.loads(extra)
    assert stored["ims_url"] == DEFAULT_IMS_TOKEN_URL  # not "***"
    assert "ims_token_url" not in stored
    assert (host, port) == (emulator.url, int(emulator.url.rsplit(":", 1)[1]))

    # Test runs in the API server: the hook fetches a token from the IMS URL of the connection.
    # The default (Adobe's) is not reachable from here, so Test is first shown to name it ...
    result = _test_button(page, "aep_form")
    assert result["status"] is False
    assert DEFAULT_IMS_TOKEN_URL.split("/ims/")[0] in result["message"], result
    assert "***" not in result["message"] and not TEMPORARY_ID.search(result["message"])

    # ... then pointed at the emulator's IMS through the Edit dialog, and Test succeeds.
    row = page.get_by_role("row").filter(has_text="aep_form")
    row.get_by_role("button", name="Edit Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    assert dialog.locator("#element_ims_url").input_value() == DEFAULT_IMS_TOKEN_URL
    dialog.locator("#element_ims_url").fill(emulator.ims_token_url)
    dialog.get_by_role("button", name="Save").click()
    dialog.wait_for(state="hidden")
    result = _test_button(page, "aep_form")
    assert result["status"] is True, result
    assert "Connected to Flow Service" in result["message"]
    page.get_by_text("Connected to Flow Service").first.wait_for()


def test_test_with_a_wrong_secret_says_what_is_wrong_without_a_temporary_id(
    page: Any, base_url: str, emulator: FlowServiceEmulator, airflow: AirflowDeployment
) -> None:
    _add_connection(page, base_url, emulator, "aep_wrong_secret", "not-the-secret")
    dialog = page.get_by_role("dialog")
    dialog.locator("#element_ims_url").fill(emulator.ims_token_url)
    dialog.get_by_role("button", name="Save").click()
    page.get_by_role("row").filter(has_text="aep_wrong_secret").wait_for()

    result = _test_button(page, "aep_wrong_secret")
    message = result["message"]
    assert result["status"] is False
    assert "IMS refused the client" in message and "client secret" in message, message
    assert not TEMPORARY_ID.search(message), message
    assert "aep_wrong_secret" not in message and "not-the-secret" not in message
    page.get_by_text("IMS refused the client").first.wait_for()
