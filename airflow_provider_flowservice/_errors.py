"""Turn an error response of Flow Service or the Adobe gateway into one actionable exception.

Two body formats exist: Flow Service's (``type`` ending in a code like ``FLOW-1430-400``, ``title``,
``report.detailed-message``, ``report.request-id``) and the gateway's (``error_code``, ``message``).
The message is one line a person can act on: method, path, HTTP status, code, title, detail,
request id and a hint for codes we know. It never contains request headers or credentials: a
body that echoes the client secret or the access token gets them replaced by ``***`` (:func:`redact`).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import quote, quote_plus

from airflow_provider_flowservice.exceptions import FlowServiceApiError

MAX_DETAIL_CHARS = 500
REDACTED = "***"
_CODE_RE = re.compile(r"(\d{3,6})(?:-(\d{3}))?$")

HINTS: dict[str, str] = {
    "1430": "check that the flow_id exists in this sandbox (connection extra sandbox_name) and org",
    "1427": "the credential may not create runs: add it to a product profile with Manage Sources "
    "in Adobe Admin Console",
    "2105": "set extra sandbox_name on the connection to the sandbox's technical name (e.g. prod)",
    "2001": "set extra org_id on the connection to the IMS org id (e.g. ABC123@AdobeOrg)",
    "2002": "set extra org_id on the connection to the IMS org id (e.g. ABC123@AdobeOrg)",
    "403000": "the API key is the connection's login (client ID): check it is set and matches the credential",
    "403003": "the API key is the connection's login (client ID): check it matches the credential",
    "403010": "no access token was accepted: check the connection's client ID and secret",
    "401013": "the access token was refused: check that org_id, client ID and secret belong to the same "
    "credential (a static access_token may have expired)",
    "2118": "the credential lacks permissions: add Manage Sources / View Sources and the sandbox to its "
    "product profile in Adobe Admin Console",
    "2120": "the credential lacks permissions: add Manage Sources / View Sources and the sandbox to its "
    "product profile in Adobe Admin Console",
    "2121": "the credential lacks permissions: add Manage Sources / View Sources and the sandbox to its "
    "product profile in Adobe Admin Console",
    "429050": "too many requests: lower the request rate or widen the retry policy",
    "1103": "an upstream Platform service is unavailable; retry later",
    "1104": "an upstream Platform service timed out; retry later",
}
DELTA_COLUMN_HINT = (
    "deltaColumn is set only on a flow's first run and cannot be changed afterwards; file-based "
    "(cloud storage) flows take none: drop delta_column"
)


class ResponseLike(Protocol):
    """What ``requests.Response`` and the async hook's ``Reply`` have in common and this module uses."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def text(self) -> str: ...

    @property
    def content(self) -> bytes: ...


def one_line(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """Collapse whitespace and truncate, so a body fits in a log line."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def secret_forms(secret: str) -> tuple[str, ...]:
    """The ways a response can echo ``secret``: raw, URL-encoded (form or path style) and JSON-escaped."""
    escaped = json.dumps(secret)[1:-1]
    forms = (
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        quote_plus(secret, safe="/"),
        escaped,
        escaped.replace("/", "\\/"),
        json.dumps(secret, ensure_ascii=False)[1:-1],
    )
    return tuple(dict.fromkeys(f for f in forms if f))


@functools.lru_cache(maxsize=64)
def _pattern(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    forms = sorted({f for s in secrets for f in secret_forms(s)}, key=len, reverse=True)
    # case-insensitive: percent-encoding may use lowercase hex digits (``%2b``)
    return re.compile("|".join(map(re.escape, forms)), re.IGNORECASE) if forms else None


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret, in every form :func:`secret_forms` lists, replaced by ``***``.

    The one redaction rule for every message built from a response (IMS and Flow Service).
    """
    pattern = _pattern(tuple(sorted({s for s in secrets if s})))
    return pattern.sub(REDACTED, text) if pattern is not None and text else text


def _body(response: ResponseLike) -> tuple[Any, str]:
    try:
        text = response.text or ""
    except Exception:  # undecodable body: report what we can
        text = ""
    try:
        return json.loads(text), text
    except ValueError:
        return None, text


def _code_of(body: Mapping[str, Any]) -> str | None:
    for key in ("error_code", "errorCode", "code"):
        value = body.get(key)
        if value not in (None, ""):
            return str(value)
    type_ = body.get("type")
    if isinstance(type_, str) and type_:
        match = _CODE_RE.search(type_.rsplit("/", 1)[-1])
        if match:
            return match.group(0)
    return None


def _text(value: Any) -> str | None:
    if value in (None, "", [], {}):
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def hint_for(code: str | None, *texts: str | None) -> str | None:
    """The fix for a known code (``1430-400`` or ``1430`` or ``403003``), or for deltaColumn errors."""
    if any(t and "deltacolumn" in t.lower().replace(" ", "") for t in texts):
        return DELTA_COLUMN_HINT
    if not code:
        return None
    match = _CODE_RE.search(code)
    return HINTS.get(match.group(1)) if match else None


def parse_error_response(
    response: ResponseLike,
    method: str,
    path: str,
    *,
    run_id: str | None = None,
    secrets: Iterable[str | None] = (),
) -> FlowServiceApiError:
    """Build a :class:`FlowServiceApiError` from an error response (never raises).

    :param secrets: the client secret and the access token(s) the request carried: replaced by
        ``***`` wherever the response echoes them.
    """
    status = int(response.status_code)
    secrets = tuple(s for s in secrets if s)
    body, raw = _body(response)
    if isinstance(body, list) and body and isinstance(body[0], Mapping):
        body = body[0]
    code = title = detail = request_id = None
    if isinstance(body, Mapping):
        code = _code_of(body)
        raw_report = body.get("report")
        report: Mapping[str, Any] = raw_report if isinstance(raw_report, Mapping) else {}
        title = _text(body.get("title")) or _text(body.get("message")) or _text(body.get("error"))
        detail = (
            _text(report.get("detailed-message"))
            or _text(body.get("detail"))
            or _text(body.get("errorMessage"))
            or _text(body.get("error_description"))
            or _text(body.get("errorDetails"))
        )
        request_id = _text(report.get("request-id")) or _text(body.get("request-id"))
    elif raw.strip():
        detail = raw
    headers = getattr(response, "headers", None) or {}
    request_id = request_id or headers.get("x-request-id") or headers.get("X-Request-Id")
    title = one_line(redact(title, secrets), 200) if title else None
    detail = one_line(redact(detail, secrets)) if detail else None
    code = redact(code, secrets) if code else None
    request_id = redact(str(request_id), secrets) if request_id else None
    if detail and title and detail == title:
        detail = None
    parts = [f"Flow Service {method.upper()} {path} failed: HTTP {status}"]
    if code:
        parts.append(code)
    if title:
        parts.append(title + (":" if detail else ""))
    if detail:
        parts.append(detail)
    message = " ".join(parts)
    if request_id:
        message += f" (request id {request_id})"
    if run_id:
        message += f" [run {run_id}]"
    hint = hint_for(code, title, detail)
    if hint:
        message += f". Hint: {hint}."
    return FlowServiceApiError(
        redact(message, secrets),
        status_code=status,
        error_code=code,
        title=title,
        detail=detail,
        request_id=request_id,
        method=method.upper(),
        url=path,
        run_id=run_id,
    )
