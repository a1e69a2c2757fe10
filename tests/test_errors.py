"""parse_error_response: both Adobe error formats, from requests and aiohttp responses, one line."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from multidict import CIMultiDict, CIMultiDictProxy

from airflow_provider_flowservice._errors import hint_for, one_line, parse_error_response
from airflow_provider_flowservice.exceptions import FlowServiceApiError
from airflow_provider_flowservice.hooks._session import Reply


def requests_response(status: int, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp._content = (body if isinstance(body, str) else json.dumps(body)).encode()
    resp.headers.update(headers or {})
    resp.encoding = "utf-8"
    return resp


def aiohttp_reply(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    content = body if isinstance(body, str) else json.dumps(body)
    return Reply(status, CIMultiDictProxy(CIMultiDict(headers or {})), content.encode())


MAKERS = [requests_response, aiohttp_reply]

FLOW_NOT_FOUND = {
    "type": "https://ns.adobe.com/aep/errors/FLOW-1430-400",
    "title": "Flow not found",
    "status": 400,
    "report": {"detailed-message": "Flow 3abea21c does not exist.", "request-id": "abc"},
    "errorMessage": "Flow 3abea21c does not exist.",
}


@pytest.mark.parametrize("make", MAKERS)
def test_flow_service_format(make: Any) -> None:
    err = parse_error_response(make(400, FLOW_NOT_FOUND), "post", "/runs")
    assert isinstance(err, FlowServiceApiError)
    assert str(err).startswith(
        "Flow Service POST /runs failed: HTTP 400 1430-400 Flow not found: Flow 3abea21c does not exist. "
        "(request id abc)"
    )
    assert "Hint: check that the flow_id exists in this sandbox" in str(err)
    assert (err.status_code, err.error_code, err.title, err.detail, err.request_id, err.method, err.url) == (
        400,
        "1430-400",
        "Flow not found",
        "Flow 3abea21c does not exist.",
        "abc",
        "POST",
        "/runs",
    )


@pytest.mark.parametrize("make", MAKERS)
def test_gateway_format_with_request_id_header(make: Any) -> None:
    err = parse_error_response(
        make(401, {"error_code": "401013", "message": "Oauth token is not valid"}, {"x-request-id": "rid-9"}),
        "GET",
        "/runs/r1",
    )
    assert str(err).startswith("Flow Service GET /runs/r1 failed: HTTP 401 401013 Oauth token is not valid")
    assert "(request id rid-9)" in str(err)
    assert "token was refused" in str(err)
    assert err.error_code == "401013" and err.request_id == "rid-9"


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("1430-400", "flow_id exists"),
        ("2105-400", "sandbox_name"),
        ("2001-401", "org_id"),
        ("2002-401", "org_id"),
        ("403000", "client ID"),
        ("403003", "client ID"),
        ("401013", "refused"),
        ("2118-403", "Admin Console"),
        ("2120-403", "Admin Console"),
        ("2121-403", "Admin Console"),
        ("1427-400", "Manage Sources"),
        ("429050", "too many requests"),
    ],
)
def test_known_codes_have_hints(code: str, fragment: str) -> None:
    hint = hint_for(code)
    assert hint and fragment in hint
    status = int(code.split("-")[1]) if "-" in code else int(code[:3])
    body = (
        {"type": f"https://ns.adobe.com/aep/errors/FLOW-{code}", "title": "T", "status": status}
        if "-" in code
        else {"error_code": code, "message": "M"}
    )
    assert fragment in str(parse_error_response(requests_response(status, body), "GET", "/runs"))


def test_delta_column_errors_get_the_delta_column_hint() -> None:
    body = {
        "type": ".../errors/FLOW-1490-400",
        "title": "Bad Request",
        "report": {"detailed-message": "deltaColumn cannot be changed once set (was DOB)."},
    }
    message = str(parse_error_response(requests_response(400, body), "POST", "/runs"))
    assert "deltaColumn is set only on a flow's first run" in message and "file-based" in message
    assert hint_for(None, "The Delta Column is not supported for this source") is not None
    assert hint_for(None, "Flow is disabled") is None


def test_unknown_code_has_no_hint() -> None:
    message = str(
        parse_error_response(
            requests_response(418, {"error_code": "999999", "message": "teapot"}), "GET", "/x"
        )
    )
    assert message == "Flow Service GET /x failed: HTTP 418 999999 teapot"


@pytest.mark.parametrize("make", MAKERS)
def test_non_json_body_is_flattened_and_truncated(make: Any) -> None:
    html = "<html>\n<body>" + "gateway exploded " * 100 + "</body></html>"
    err = parse_error_response(make(502, html), "GET", "/runs")
    message = str(err)
    assert "\n" not in message
    assert message.startswith("Flow Service GET /runs failed: HTTP 502 <html> <body>gateway exploded")
    assert len(message) < 650 and message.endswith("...")
    assert err.error_code is None


def test_empty_body() -> None:
    assert str(parse_error_response(requests_response(503, ""), "GET", "/runs")) == (
        "Flow Service GET /runs failed: HTTP 503"
    )


def test_list_body_and_alternative_fields() -> None:
    body = [{"code": "1104-504", "message": "Timeout", "detail": "upstream slow", "request-id": "q1"}]
    err = parse_error_response(requests_response(504, body), "GET", "/runs")
    assert (err.error_code, err.title, err.detail, err.request_id) == (
        "1104-504",
        "Timeout",
        "upstream slow",
        "q1",
    )
    assert "retry later" in str(err)


def test_no_request_headers_or_credentials_in_the_error() -> None:
    req = requests.Request(
        "GET",
        "https://platform.adobe.io/data/foundation/flowservice/runs",
        headers={"Authorization": "Bearer SECRET-TOKEN", "x-api-key": "KEY"},
    ).prepare()
    resp = requests_response(400, FLOW_NOT_FOUND)
    resp.request = req
    err = parse_error_response(resp, "GET", "/runs")
    text = str(err) + repr(vars(err))
    assert "SECRET-TOKEN" not in text and "KEY" not in text and "Authorization" not in text


def test_one_line() -> None:
    assert one_line("a\n  b\tc") == "a b c"
    assert one_line("x" * 20, 10) == "xxxxxxx..."


SECRET = "cl1ent-s3cret+/="
TOKEN = "eyJhbGciOiJSUzI1NiJ9.payload.signature"


@pytest.mark.parametrize("make", MAKERS)
def test_secrets_echoed_by_a_response_are_redacted_everywhere(make: Any) -> None:
    from urllib.parse import quote, quote_plus

    body = {
        "type": "https://ns.adobe.com/aep/errors/FLOW-1430-400",
        "title": f"Bearer {TOKEN} refused",
        "report": {
            "detailed-message": f"client_secret={quote_plus(SECRET)} or {quote(SECRET, safe='')} or {SECRET}",
            "request-id": TOKEN,
        },
    }
    err = parse_error_response(make(400, body), "POST", "/runs", secrets=(SECRET, TOKEN, None, ""))
    for text in (str(err), err.title or "", err.detail or "", err.request_id or ""):
        assert SECRET not in text and TOKEN not in text
        assert quote_plus(SECRET) not in text and quote(SECRET, safe="") not in text
    assert err.title == "Bearer *** refused"
    assert err.detail == "client_secret=*** or *** or ***"
    assert "1430-400" in str(err) and "Hint: check that the flow_id exists" in str(err)


@pytest.mark.parametrize("make", MAKERS)
def test_a_non_json_body_echoing_the_token_is_redacted(make: Any) -> None:
    response = make(502, f"<html>upstream saw {TOKEN}</html>")
    err = parse_error_response(response, "GET", "/runs", secrets=[TOKEN])
    assert TOKEN not in str(err) and "<html>upstream saw ***</html>" in str(err)


def test_redact_ignores_empty_secrets_and_leaves_other_text() -> None:
    from airflow_provider_flowservice._errors import redact

    assert redact("nothing secret here", ["", None]) == "nothing secret here"
    assert redact("a tok b tok", ["tok"]) == "a *** b ***"


def test_decode_response_redacts_the_sent_token_and_the_client_secret() -> None:
    from airflow_provider_flowservice._connection import FlowServiceConnectionSettings
    from airflow_provider_flowservice.hooks._api import decode_response

    settings = FlowServiceConnectionSettings.from_fields(
        conn_id="aep", host="https://platform.adobe.io", login="id", password=SECRET, extra={"org_id": "O@A"}
    )
    for status, body in ((400, {"title": f"{TOKEN} {SECRET}"}), (200, f"not json {TOKEN} {SECRET}")):
        with pytest.raises(FlowServiceApiError) as caught:
            decode_response(settings, requests_response(status, body), "GET", "/runs", token=TOKEN)
        assert TOKEN not in str(caught.value) and SECRET not in str(caught.value)
        assert "*** ***" in str(caught.value)
    from airflow_provider_flowservice.hooks._api import parse_created_run

    with pytest.raises(FlowServiceApiError, match="without a run id") as caught:
        parse_created_run({"echo": SECRET}, secrets=[SECRET])
    assert SECRET not in str(caught.value)
