"""One exception family for the provider, each message written for the person who must act on it.

Messages never include a client secret or an access token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from airflow_provider_flowservice.version_compat import AirflowException, AirflowFailException

if TYPE_CHECKING:
    from airflow_provider_flowservice.models import RunError


class FlowServiceError(AirflowException):
    """Base class of every error this provider raises."""


class FlowServiceConfigError(FlowServiceError, AirflowFailException, ValueError):
    """Bad user input (operator argument, template result, connection field), caught before any request.

    A task fails on it without using its retries: the same input would fail the same way.
    """


class FlowServiceApiError(FlowServiceError):
    """Flow Service or the Adobe gateway answered with an error.

    Carries what Adobe support and the user need: HTTP status, Adobe error code, title, detailed
    message and request id (plus the run id when one is concerned).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_code: str | None = None,
        title: str | None = None,
        detail: str | None = None,
        request_id: str | None = None,
        method: str | None = None,
        url: str | None = None,
        run_id: str | None = None,
    ) -> None:
        # Same meaning as AirflowException.status_code (an HTTP status), but the upstream one, as an int.
        self.status_code = status_code  # type: ignore[assignment]
        self.error_code = error_code
        self.title = title
        self.detail = detail
        self.request_id = request_id
        self.method = method
        self.url = url
        self.run_id = run_id
        super().__init__(message)

    def add_context(self, text: str) -> None:
        """Append what the failed request was about (its flow id, window, ...) to the message."""
        self.args = (f"{self.args[0]} {text}", *self.args[1:])


class FlowServiceAuthError(FlowServiceApiError):
    """IMS refused the credentials, or the gateway refused a freshly issued token."""


class FlowServiceRetryError(FlowServiceApiError):
    """Transient errors (429, 5xx, timeouts, resets) outlasted the retry budget.

    ``retry_after`` holds the seconds the server last asked to wait (``Retry-After``), if it did:
    a poller waits at least that long before asking again.
    """

    retry_after: float | None = None


class FlowServiceRunError(FlowServiceError):
    """A flow run ended ``failed`` (or ``partialSuccess`` when that is not allowed)."""

    def __init__(self, message: str, *, run_id: str, status: str, errors: Sequence[RunError] = ()) -> None:
        self.run_id = run_id
        self.status = status
        self.errors = tuple(errors)
        super().__init__(message)


class FlowServiceTimeoutError(FlowServiceError):
    """The run did not reach a terminal status before the configured timeout."""

    def __init__(self, message: str, *, run_id: str, last_status: str | None = None) -> None:
        self.run_id = run_id
        self.last_status = last_status
        super().__init__(message)


__all__ = [
    "FlowServiceApiError",
    "FlowServiceAuthError",
    "FlowServiceConfigError",
    "FlowServiceError",
    "FlowServiceRetryError",
    "FlowServiceRunError",
    "FlowServiceTimeoutError",
]
