"""Reply objects and the two error formats the real platform uses (gateway and Flow Service)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BAD_REQUEST = "1001-400"
"""Emulator's own code for request validation errors (the docs publish no code for these)."""

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

GATEWAY_MESSAGES = {
    "401013": "Oauth token is not valid",
    "403010": "Oauth token is missing.",
    "403000": "Api Key is required",
    "403003": "Api Key is invalid",
    "429050": "Too many requests",
}


@dataclass
class Reply:
    """An HTTP answer: status, JSON body (or None for an empty body) and extra headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """Raised inside request handling to answer with an error reply."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def gateway_error(status: int, code: str, message: str | None = None) -> Reply:
    """The API gateway's format, e.g. ``{"error_code": "401013", "message": "Oauth token is not valid"}``."""
    return Reply(status, {"error_code": code, "message": message or GATEWAY_MESSAGES.get(code, "")})


def flow_error(status: int, code: str, detail: str, request_id: str = "", title: str | None = None) -> Reply:
    """Flow Service's format; ``code`` like ``1430-400`` becomes ``type`` ``.../errors/FLOW-1430-400``.

    ``request-id`` is filled in by the handler when left empty.
    """
    title = title or _TITLES.get(status, "Error")
    body = {
        "type": f"https://ns.adobe.com/aep/errors/FLOW-{code}",
        "title": title,
        "status": status,
        "report": {"detailed-message": detail, "request-id": request_id},
        "errorMessage": detail,
        "errorDetails": {"code": f"FLOW-{code}", "message": detail},
    }
    return Reply(status, body)


def fail(status: int, code: str, detail: str, title: str | None = None) -> ApiError:
    """Shorthand: an :class:`ApiError` carrying a Flow Service error."""
    return ApiError(flow_error(status, code, detail, title=title))
