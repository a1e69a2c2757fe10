"""Bounded retries of transient failures, the same for requests (sync) and aiohttp (async).

Transient: connection errors, connect/read timeouts, resets, and HTTP 429/500/502/503/504.
Permanent: TLS failures (certificate verification, a non-TLS server), other 4xx, malformed answers.
Waits grow exponentially with jitter up to ``max_backoff``; a server's ``Retry-After`` (seconds or
an HTTP date) is honoured in full when it fits in what is left of ``max_total_seconds``, and ends
the retries at once when it does not. The policy is a small JSON-safe value so it can travel in a
trigger's serialized kwargs.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_flowservice.exceptions import (
    FlowServiceApiError,
    FlowServiceAuthError,
    FlowServiceConfigError,
    FlowServiceRetryError,
)

# aiohttp, requests and tenacity are imported where they are used: every DAG file that uses the
# provider imports this module, and they would add a large share of its parse cost.
if TYPE_CHECKING:
    import requests
    import tenacity

log = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry transient failures.

    :param max_attempts: attempts in all, first one included.
    :param initial_backoff: seconds before the first retry; doubles each time (with jitter).
    :param max_backoff: the longest computed wait. A server's ``Retry-After`` is honoured beyond it.
    :param max_total_seconds: time budget from the first attempt; no retry starts after it, and a
        ``Retry-After`` longer than what is left of it ends the retries at once.
    """

    max_attempts: int = 6
    initial_backoff: float = 1.0
    max_backoff: float = 30.0
    max_total_seconds: float = 300.0

    def __post_init__(self) -> None:
        if (
            not isinstance(self.max_attempts, int)
            or isinstance(self.max_attempts, bool)
            or self.max_attempts < 1
        ):
            raise FlowServiceConfigError(
                f"RetryPolicy max_attempts={self.max_attempts!r} is invalid: use an integer >= 1."
            )
        for name in ("initial_backoff", "max_backoff", "max_total_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise FlowServiceConfigError(f"RetryPolicy {name}={value!r} is invalid: use a number >= 0.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (for trigger kwargs)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RetryPolicy:
        """Inverse of :meth:`to_dict`; missing keys take defaults, unknown keys are an error."""
        if not data:
            return cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FlowServiceConfigError(
                f"RetryPolicy got unknown key(s) {unknown}; known keys are {sorted(known)}."
            )
        return cls(**dict(data))

    @classmethod
    def coerce(cls, value: RetryPolicy | Mapping[str, Any] | None) -> RetryPolicy:
        """Accept a policy, its dict form, or ``None`` (defaults)."""
        if isinstance(value, RetryPolicy):
            return value
        if value is None or isinstance(value, Mapping):
            return cls.from_dict(value)
        raise FlowServiceConfigError(
            f"retry must be a RetryPolicy or a dict of its fields, not {type(value).__name__}."
        )

    def backoff(self, attempt: int) -> float:
        """Wait after failed attempt number ``attempt`` (1-based): exponential with equal jitter."""
        base = min(self.max_backoff, self.initial_backoff * (2 ** max(0, attempt - 1)))
        return base / 2 + random.uniform(0, base / 2)  # noqa: S311 - jitter, not crypto


class TransientFailure(Exception):
    """An attempt failed in a way worth retrying.

    :param description: what happened, for the final error message.
    :param status_code: the HTTP status, when there was a response.
    :param retry_after: seconds the server asked us to wait.
    :param maybe_processed: the request may have reached the server (read timeout, dropped
        connection, 5xx): a non-idempotent request must check before it is sent again.
    :param still_processing: no answer came in time (read timeout, 504): the server may still be
        working on the request, so its effect may show up only later.
    :param api_error: the parsed error body, when there was one.
    """

    def __init__(
        self,
        description: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        maybe_processed: bool = True,
        still_processing: bool = False,
        api_error: FlowServiceApiError | None = None,
    ) -> None:
        super().__init__(description)
        self.description = description
        self.status_code = status_code
        self.retry_after = retry_after
        self.maybe_processed = maybe_processed
        self.still_processing = still_processing
        self.api_error = api_error


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); None if absent/invalid."""
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else time.time()
    return max(0.0, when.timestamp() - current)


def transient_from_status(
    status: int, headers: Mapping[str, str], api_error: FlowServiceApiError | None = None
) -> TransientFailure | None:
    """A :class:`TransientFailure` for 429/5xx responses, else None. A 429 was not processed."""
    if status not in TRANSIENT_STATUSES:
        return None
    description = str(api_error) if api_error else f"HTTP {status}"
    return TransientFailure(
        description,
        status_code=status,
        retry_after=parse_retry_after(headers.get("Retry-After") or headers.get("retry-after")),
        maybe_processed=status != 429,
        still_processing=status == 504,
        api_error=api_error,
    )


def _never_reached_requests(exc: requests.RequestException) -> bool:
    import requests

    if isinstance(exc, requests.ConnectTimeout):
        return True
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps (``__cause__``/``__context__``, urllib3's ``reason``, ``args[0]``)."""
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo and len(seen) < 12:
        item = todo.pop(0)
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        todo += [item.__cause__, item.__context__, getattr(item, "reason", None)]
        todo += [a for a in item.args[:1] if isinstance(a, BaseException)]
    return seen


def tls_error_of(exc: BaseException) -> BaseException | None:
    """The ``ssl.SSLError`` behind ``exc`` (else an error that says the certificate failed), if any."""
    import ssl

    causes = _causes(exc)
    for cause in causes:
        if isinstance(cause, ssl.SSLError):
            return cause
    for cause in causes:
        if "CERTIFICATE_VERIFY_FAILED" in str(cause).upper():
            return cause
    return None


def _tls_dropped(cause: BaseException) -> bool:
    import ssl

    return isinstance(cause, ssl.SSLEOFError | ssl.SSLZeroReturnError | ssl.SSLSyscallError)


def is_tls_failure(exc: BaseException) -> bool:
    """True when TLS itself failed (certificate not trusted, hostname mismatch, a non-TLS server).

    Such a failure repeats on every attempt, so it is permanent. A TLS connection that merely
    dropped mid-handshake (EOF, syscall error) is not counted: that is a transient network fault.
    """
    cause = tls_error_of(exc)
    return cause is not None and not _tls_dropped(cause)


def transient_from_requests(exc: requests.RequestException) -> TransientFailure | None:
    """Classify a requests exception: transient ones become :class:`TransientFailure`, others None."""
    import requests

    if isinstance(exc, requests.exceptions.SSLError):
        cause = tls_error_of(exc)
        if cause is None or not _tls_dropped(cause):
            return None
    if isinstance(
        exc, requests.Timeout | requests.ConnectionError | requests.exceptions.ChunkedEncodingError
    ):
        read_timeout = isinstance(exc, requests.ReadTimeout)
        kind = "read timeout" if read_timeout else type(exc).__name__
        return TransientFailure(
            f"{kind}: {_short(exc)}",
            maybe_processed=not _never_reached_requests(exc),
            still_processing=read_timeout,
        )
    return None


def transient_from_aiohttp(exc: BaseException) -> TransientFailure | None:
    """Classify an aiohttp (or timeout) exception: transient ones become :class:`TransientFailure`."""
    import aiohttp

    if is_tls_failure(exc) or isinstance(exc, aiohttp.ClientSSLError):
        cause = tls_error_of(exc)
        if cause is None or not _tls_dropped(cause):
            return None
    never_sent = (aiohttp.ClientConnectorError, getattr(aiohttp, "ConnectionTimeoutError", ()))
    if isinstance(exc, never_sent) or (
        isinstance(exc, aiohttp.ServerTimeoutError) and "connection timeout" in str(exc).lower()
    ):
        return TransientFailure(f"{type(exc).__name__}: {_short(exc)}", maybe_processed=False)
    if isinstance(exc, TimeoutError | aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        read_timeout = isinstance(exc, TimeoutError)  # ServerTimeoutError is one
        kind = "read timeout" if read_timeout else type(exc).__name__
        return TransientFailure(f"{kind}: {_short(exc)}", maybe_processed=True, still_processing=read_timeout)
    return None


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


class _Wait:
    """Exponential backoff with jitter capped by max_backoff, or the server's Retry-After in full.

    Either way the wait never runs past the budget (``stop`` has already ended the retries when a
    Retry-After does not fit in it).

    A plain callable (tenacity accepts one as ``wait``), so this module needs no tenacity import.
    """

    def __init__(self, policy: RetryPolicy, started: float) -> None:
        self.policy = policy
        self.started = started

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            delay = float(retry_after)
        else:
            delay = self.policy.backoff(retry_state.attempt_number)
        remaining = self.policy.max_total_seconds - (time.monotonic() - self.started)
        return max(0.0, min(delay, remaining))


def _retry_after_too_long(policy: RetryPolicy, exc: BaseException | None, started: float) -> bool:
    """True when the server asked for a longer wait than is left of the time budget."""
    retry_after = getattr(exc, "retry_after", None)
    remaining = policy.max_total_seconds - (time.monotonic() - started)
    return retry_after is not None and float(retry_after) > remaining


def _tenacity_kwargs(policy: RetryPolicy, method: str, path: str, started: float) -> dict[str, Any]:
    """Retry settings; the time budget counts from ``started`` (the first attempt)."""
    import tenacity

    def stop(state: tenacity.RetryCallState) -> bool:
        return (
            state.attempt_number >= policy.max_attempts
            or time.monotonic() - started >= policy.max_total_seconds
            or _retry_after_too_long(policy, state.outcome.exception() if state.outcome else None, started)
        )

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "Flow Service %s %s attempt %d/%d failed (%s); retrying in %.2f s.",
            method,
            path,
            state.attempt_number,
            policy.max_attempts,
            exc,
            wait,
        )

    return {
        "stop": stop,
        "wait": _Wait(policy, started),
        "retry": tenacity.retry_if_exception_type(TransientFailure),
        "before_sleep": before_sleep,
        "reraise": True,
    }


def _give_up(
    policy: RetryPolicy, method: str, path: str, *, attempts: int, started: float, last: TransientFailure
) -> FlowServiceRetryError:
    elapsed = time.monotonic() - started
    api = last.api_error
    remaining = max(0.0, policy.max_total_seconds - elapsed)
    if attempts < policy.max_attempts and last.retry_after is not None and last.retry_after > remaining:
        message = (
            f"Flow Service {method} {path} failed after {attempts} attempt(s) in {elapsed:.1f} s and was "
            f"not retried: the server asked to wait {last.retry_after:g} s (Retry-After), more than the "
            f"{remaining:.1f} s left of the retry budget (max_total_seconds={policy.max_total_seconds:g}). "
            f"Retry later, or raise RetryPolicy max_total_seconds. Last error: {last.description}"
        )
    else:
        message = (
            f"Flow Service {method} {path} still failing after {attempts} attempt(s) in {elapsed:.1f} s "
            f"(retry policy: max_attempts={policy.max_attempts}, "
            f"max_total_seconds={policy.max_total_seconds:g}); "
            f"last error: {last.description}"
        )
    error = FlowServiceRetryError(
        message,
        status_code=last.status_code,
        error_code=api.error_code if api else None,
        title=api.title if api else None,
        detail=api.detail if api else None,
        request_id=api.request_id if api else None,
        method=method,
        url=path,
        run_id=api.run_id if api else None,
    )
    error.retry_after = last.retry_after
    return error


def call_with_retry(policy: RetryPolicy, attempt: Callable[[], T], *, method: str, path: str) -> T:
    """Call ``attempt`` until it returns, raises a non-transient error, or the policy is spent.

    :raises FlowServiceRetryError: saying what was tried when transient failures outlast the policy.
    """
    import tenacity

    started = time.monotonic()
    retrying = tenacity.Retrying(sleep=time.sleep, **_tenacity_kwargs(policy, method, path, started))
    try:
        return retrying(attempt)
    except TransientFailure as last:
        attempts = retrying.statistics.get("attempt_number", policy.max_attempts)
        raise _give_up(policy, method, path, attempts=attempts, started=started, last=last) from None


async def acall_with_retry(
    policy: RetryPolicy, attempt: Callable[[], Awaitable[T]], *, method: str, path: str
) -> T:
    """Async twin of :func:`call_with_retry`; waits with ``asyncio.sleep``, never blocks the loop.

    The first attempt runs without tenacity: nearly every call succeeds at once, and a triggerer
    makes thousands of them. A transient failure brings in tenacity, which replays that failure as
    its own first attempt, so waits, log lines and the time budget are the same as without the
    shortcut.
    """
    started = time.monotonic()
    try:
        return await attempt()
    except TransientFailure as exc:
        first: TransientFailure | None = exc

    import tenacity

    retrying = tenacity.AsyncRetrying(sleep=asyncio.sleep, **_tenacity_kwargs(policy, method, path, started))

    async def call() -> T:  # a real coroutine function, whatever callable ``attempt`` is
        nonlocal first
        if first is not None:
            failure, first = first, None
            raise failure
        return await attempt()

    try:
        return await retrying(call)
    except TransientFailure as last:
        attempts = retrying.statistics.get("attempt_number", policy.max_attempts)
        raise _give_up(policy, method, path, attempts=attempts, started=started, last=last) from None


def redirect_error(
    status: int, location: str | None, method: str, path: str, expected_host: str
) -> FlowServiceApiError:
    """Redirects are never followed (the token must not reach another host): explain and refuse."""
    from urllib.parse import urlsplit

    target = urlsplit(location or "").netloc or expected_host
    return FlowServiceApiError(
        f"Flow Service {method} {path} answered HTTP {status}, a redirect to host '{target}'. Redirects are "
        f"not followed so credentials never leave '{expected_host}'. Set the connection host to the API "
        "base URL itself (e.g. https://platform.adobe.io).",
        status_code=status,
        method=method,
        url=path,
    )


def is_transient(exc: BaseException) -> bool:
    """True for errors worth polling through: retry budget spent, 429, 5xx, timeouts, connection errors.

    Not transient, as polling again cannot fix them: auth errors, 404 and other 4xx, and API errors
    without an HTTP status. Those are local or permanent (TLS verification failed, the request
    could not be built, a next-page link to another host, an answer without a run id): transient
    transport failures are retried inside the hook and end as :class:`FlowServiceRetryError`. Used
    by the wait policy (``_watch.RunWatch``) and the coalesced list polls.
    """
    if isinstance(exc, FlowServiceRetryError):
        return True
    if isinstance(exc, FlowServiceAuthError):
        return False
    if isinstance(exc, FlowServiceApiError):
        code = exc.status_code
        return code is not None and (code == 429 or code >= 500)
    if is_tls_failure(exc):
        return False
    if isinstance(exc, OSError):  # includes TimeoutError and ConnectionError
        return True
    aiohttp = sys.modules.get("aiohttp")  # only an aiohttp user can have raised one of its errors
    return aiohttp is not None and isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError)
