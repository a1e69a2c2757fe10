"""Adobe IMS OAuth server-to-server tokens, fetched once and shared by the whole process.

Every hook, async hook and trigger in a process shares one cache keyed by (token URL, client id,
sha256 of the secret, scopes). A token is renewed before it expires; concurrent callers that need
a token (threads, or tasks of one event loop) cause a single IMS request. On a 401 from the
gateway a caller invalidates the cached token only if it is the one that failed, so a burst of
401s triggers one renewal, not one per caller. A request is repeated with a renewed token; a token
issued after the refusal being refused as well proves the credentials wrong (see
:class:`Renewals`). Tokens and secrets are masked and never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_flowservice._connection import FlowServiceConnectionSettings
from airflow_provider_flowservice._errors import ResponseLike, one_line, redact
from airflow_provider_flowservice._retry import (
    RetryPolicy,
    TransientFailure,
    acall_with_retry,
    call_with_retry,
    redirect_error,
    tls_error_of,
    transient_from_aiohttp,
    transient_from_requests,
    transient_from_status,
)
from airflow_provider_flowservice.exceptions import FlowServiceApiError, FlowServiceAuthError
from airflow_provider_flowservice.version_compat import mask_secret

if TYPE_CHECKING:  # imported where used, to keep DAG-file parsing cheap (see _retry.py)
    import aiohttp
    import requests

    from airflow_provider_flowservice._token_file_cache import TokenFile

log = logging.getLogger(__name__)

RENEW_BEFORE_SECONDS = 300.0
RENEW_BEFORE_FRACTION = 0.1
MIN_MARGIN_SECONDS = 1.0
"""Short-lived tokens still get up to this much margin (at most a quarter of their life) for latency."""
MAX_RENEWALS = 3
"""Renewals one request may make after 401s (see :class:`Renewals`)."""
DEFAULT_TTL_SECONDS = 3600.0
TokenKey = tuple[str, str, str, tuple[str, ...]]

_IMS_HINTS = {
    "invalid_client": "check the connection's login (client ID) and password (client secret) against the "
    "OAuth Server-to-Server credential in Adobe Developer Console",
    "unauthorized_client": "the credential may not use client credentials: create an OAuth "
    "Server-to-Server credential in Adobe Developer Console",
    "invalid_scope": "set extra scopes to exactly the scopes the credential shows in Adobe Developer Console",
    "invalid_request": "check extra ims_url and the client ID",
}


_MIN_MASKED_LENGTH = 5
"""Airflow's default ``[logging] min_length_masked_secret``."""


def _mask(value: str | None) -> None:
    # Airflow does not mask values this short and warns "Skipping masking for a secret as it's
    # too short" on every try; asking it adds only that line.
    if value and len(value) >= _MIN_MASKED_LENGTH:
        try:
            mask_secret(value)
        except Exception:  # masking must never break a request
            log.debug("mask_secret failed", exc_info=True)


@dataclass(frozen=True)
class AccessToken:
    """An IMS access token and when to renew it (monotonic clock)."""

    value: str = field(repr=False)
    expires_at: float
    ttl: float

    @property
    def renew_at(self) -> float:
        """Renew once less than min(5 min, 10% of the lifetime) remains.

        For very short lifetimes (tests, odd IMS setups) the margin is at least min(1 s, 25%), so
        request latency does not turn a "fresh" token into a refused one on arrival.
        """
        margin = min(RENEW_BEFORE_SECONDS, RENEW_BEFORE_FRACTION * self.ttl)
        return self.expires_at - max(margin, min(MIN_MARGIN_SECONDS, 0.25 * self.ttl))

    @property
    def issued_at(self) -> float:
        """When it was asked for (monotonic clock): it cannot predate this."""
        return self.expires_at - self.ttl

    def is_fresh(self, now: float | None = None) -> bool:
        """Usable without renewal."""
        return (now if now is not None else time.monotonic()) < self.renew_at

    def is_expired(self, now: float | None = None) -> bool:
        """Past its lifetime: must not be sent."""
        return (now if now is not None else time.monotonic()) >= self.expires_at


def token_key(settings: FlowServiceConnectionSettings) -> TokenKey:
    """The cache key of a connection's credentials (the secret only as a hash)."""
    secret_hash = hashlib.sha256((settings.client_secret or "").encode()).hexdigest()
    return (settings.ims_token_url, settings.client_id, secret_hash, settings.scopes)


class TokenCache:
    """Process-wide, thread-safe, single-flight token store."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[TokenKey, AccessToken] = {}
        self._fetch_locks: dict[TokenKey, threading.Lock] = {}
        self._async_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[TokenKey, asyncio.Lock]]
        self._async_locks = weakref.WeakKeyDictionary()
        self.fetches = 0
        """How many tokens this cache fetched (for tests and metrics)."""

    def peek(self, key: TokenKey) -> AccessToken | None:
        """The cached token for ``key`` if it needs no renewal."""
        with self._lock:
            token = self._tokens.get(key)
        return token if token is not None and token.is_fresh() else None

    def _store(self, key: TokenKey, token: AccessToken) -> AccessToken:
        with self._lock:
            self._tokens[key] = token
            self.fetches += 1
        return token

    def _instead_of(self, key: TokenKey, failure: Exception) -> AccessToken:
        """A renewal failed: the current token while it lives, unless IMS refused the credentials."""
        with self._lock:
            token = self._tokens.get(key)
        if isinstance(failure, FlowServiceAuthError) or token is None or token.is_expired():
            raise failure
        log.warning("Renewing the IMS token failed; using the current one until it expires.")
        return token

    def get(self, key: TokenKey, fetch: Callable[[], AccessToken]) -> AccessToken:
        """Return a fresh token, fetching it at most once across concurrent threads."""
        token = self.peek(key)
        if token is not None:
            return token
        with self._lock:
            fetch_lock = self._fetch_locks.setdefault(key, threading.Lock())
        with fetch_lock:
            token = self.peek(key)
            if token is not None:
                return token
            try:
                return self._store(key, fetch())
            except Exception as failure:
                return self._instead_of(key, failure)

    async def aget(self, key: TokenKey, fetch: Callable[[], Awaitable[AccessToken]]) -> AccessToken:
        """Async twin of :meth:`get`: one fetch per key among the tasks of one event loop."""
        token = self.peek(key)
        if token is not None:
            return token
        loop = asyncio.get_running_loop()
        with self._lock:
            lock = self._async_locks.setdefault(loop, {}).setdefault(key, asyncio.Lock())
        async with lock:
            token = self.peek(key)
            if token is not None:
                return token
            try:
                return self._store(key, await fetch())
            except Exception as failure:
                return self._instead_of(key, failure)

    def invalidate(self, key: TokenKey, value: str) -> bool:
        """Drop the cached token only if it is ``value`` (the one that failed); True if dropped."""
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and token.value == value:
                del self._tokens[key]
                return True
        return False

    def clear(self) -> None:
        """Forget every token (tests)."""
        with self._lock:
            self._tokens.clear()
            self._fetch_locks.clear()
            self._async_locks.clear()
            self.fetches = 0


TOKEN_CACHE = TokenCache()
"""The one cache of the process."""


def _form(settings: FlowServiceConnectionSettings) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": settings.client_id,
        "client_secret": settings.client_secret or "",
        "scope": ",".join(settings.scopes),
    }


def _token_path(settings: FlowServiceConnectionSettings) -> str:
    parts = urlsplit(settings.ims_token_url)
    return f"{parts.netloc}{parts.path}"


def _parse_token_response(
    settings: FlowServiceConnectionSettings, resp: ResponseLike, sent_at: float
) -> AccessToken:
    """Interpret an IMS answer: a token, a transient failure (raised) or an auth error (raised).

    The lifetime counts from ``sent_at`` (before the request), so IMS latency never makes us
    believe a token lives longer than it does.
    """
    status, headers, text = resp.status_code, resp.headers, resp.text
    location = headers.get("Location")
    path = _token_path(settings)
    if 300 <= status < 400:
        raise redirect_error(status, location, "POST", path, urlsplit(settings.ims_token_url).netloc)
    try:
        body: Any = json.loads(text) if text else {}
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    transient = transient_from_status(status, headers)
    if transient is not None:
        transient.description = f"IMS HTTP {status}"
        transient.maybe_processed = False  # a token request is safe to repeat
        raise transient
    if status >= 400 or not body.get("access_token"):
        error = str(body.get("error") or body.get("error_code") or f"HTTP {status}")
        description = str(body.get("error_description") or body.get("message") or "")
        if not body and text and status >= 400:
            description = text
        secrets = settings.secrets()
        error, description = redact(error, secrets), one_line(redact(description, secrets), 300)
        hint = _IMS_HINTS.get(
            error, "check the connection's client ID, client secret, scopes and ims_url"
        )
        if status in (404, 405):
            hint = f"{settings.ims_token_url} is not an IMS token endpoint: check extra ims_url"
        if status < 400:
            error, description = "no access_token in the response", ""
        raise FlowServiceAuthError(
            f"Adobe IMS refused the credentials of connection '{settings.conn_id}' (HTTP {status} {error}"
            + (f": {one_line(description, 300)}" if description else "")
            + f"). Hint: {hint}.",
            status_code=status,
            error_code=error,
            detail=description or None,
            method="POST",
            url=path,
        )
    value = str(body["access_token"])
    _mask(value)
    ttl = _ttl(body.get("expires_in"))
    return AccessToken(value=value, expires_at=sent_at + ttl, ttl=ttl)


def _ttl(raw: Any) -> float:
    try:
        ttl = float(raw)
    except (TypeError, ValueError):
        return DEFAULT_TTL_SECONDS
    if ttl > 10 * 86400:  # the retired JWT exchange answered in milliseconds; IMS v3 says seconds
        ttl /= 1000
    return max(ttl, 0.0)


def fetch_token(
    settings: FlowServiceConnectionSettings, policy: RetryPolicy, session: requests.Session | None = None
) -> AccessToken:
    """Ask IMS for a token with the client-credentials grant (form-encoded), retrying transient errors."""
    import requests

    from airflow_provider_flowservice.hooks._api import USER_AGENT

    http = session or requests.Session()

    def attempt() -> AccessToken:
        sent_at = time.monotonic()
        try:
            resp = http.post(
                settings.ims_token_url,
                data=_form(settings),
                headers={"Accept": "application/json", "User-Agent": USER_AGENT},
                timeout=(settings.connect_timeout, settings.read_timeout),
                verify=settings.tls_verify(ims=True),  # IMS stays verified (docs/connection.md "TLS")
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise _unanswered(settings, exc, transient_from_requests(exc)) from None
        return _parse_token_response(settings, resp, sent_at)

    log.info("Requesting an Adobe IMS access token for connection '%s'.", settings.conn_id)
    return call_with_retry(policy, attempt, method="POST", path=_token_path(settings))


async def afetch_token(
    settings: FlowServiceConnectionSettings, policy: RetryPolicy, session: aiohttp.ClientSession
) -> AccessToken:
    """Async twin of :func:`fetch_token` on the loop's ``aiohttp.ClientSession``."""
    from airflow_provider_flowservice.hooks import _session

    context = await _session.ssl_for(settings.tls_verify(ims=True))
    timeout = _session.timeout_of(settings.connect_timeout, settings.read_timeout)
    proxy = _session.env_proxy(settings.ims_token_url)

    async def attempt() -> AccessToken:
        sent_at = time.monotonic()
        try:
            resp = await _session.send(
                session,
                "POST",
                settings.ims_token_url,
                data=_form(settings),
                headers={"Accept": "application/json", "User-Agent": _session.USER_AGENT},
                ssl_context=context,
                timeout=timeout,
                proxy=proxy,
            )
        except Exception as exc:
            raise _unanswered(settings, exc, transient_from_aiohttp(exc)) from None
        return _parse_token_response(settings, resp, sent_at)

    log.info("Requesting an Adobe IMS access token for connection '%s'.", settings.conn_id)
    return await acall_with_retry(policy, attempt, method="POST", path=_token_path(settings))


def _unanswered(
    settings: FlowServiceConnectionSettings, exc: Exception, failure: TransientFailure | None
) -> Exception:
    """What to raise for a token request that got no answer (``failure``: its transient reading).

    Transient: repeated (no token was issued, so nothing is lost). Otherwise permanent (no HTTP
    status, so never polled through): TLS failed, or the URL is unusable.
    """
    if failure is not None:
        failure.maybe_processed = False
        return failure
    shown = tls_error_of(exc) or exc  # the TLS reason, not requests' long wrapper around it
    return FlowServiceApiError(
        f"Could not reach Adobe IMS at {_token_path(settings)} for connection '{settings.conn_id}': "
        f"{type(shown).__name__}: {one_line(str(shown), 300)}. Check extra ims_url and verify_tls.",
        method="POST",
        url=_token_path(settings),
    )


class Renewals:
    """When one request may renew its token after a 401 and send again.

    The first 401 always earns a renewal. The token used next may be another caller's renewal
    from before that 401, revoked in the same wave; so a later 401 earns one more renewal while
    the refused token predates the previous refusal. A token issued after the previous refusal
    being refused proves the credentials wrong. At most :data:`MAX_RENEWALS` per request.
    """

    def __init__(self) -> None:
        self.count = 0
        self._last_refusal: float | None = None

    def another(self, refused: AccessToken) -> bool:
        """``refused`` was just answered 401: True to renew and send again."""
        now = time.monotonic()
        proven = self._last_refusal is not None and refused.issued_at >= self._last_refusal
        if proven or self.count >= MAX_RENEWALS:
            return False
        self.count += 1
        self._last_refusal = now
        return True


def _from_file(value: str, expires_at: float, ttl: float) -> AccessToken:
    """A token another process stored (masked here too: this process never saw it come from IMS)."""
    _mask(value)
    return AccessToken(value=value, expires_at=expires_at, ttl=ttl)


class TokenProvider:
    """Hands out the access token of one connection: the static one, or one from the shared cache.

    Behind the process-wide cache sits a per-user token file shared with the other processes on
    the host (``_token_file_cache``; connection extra ``token_cache: false`` turns it off).
    """

    def __init__(
        self, settings: FlowServiceConnectionSettings, policy: RetryPolicy, cache: TokenCache | None = None
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.cache = cache or TOKEN_CACHE
        self.key = token_key(settings)
        self.shared: TokenFile[AccessToken] | None = None
        if settings.token_cache and not settings.uses_static_token:
            from airflow_provider_flowservice._token_file_cache import token_file

            self.shared = token_file(self.key, _from_file)
        _mask(settings.client_secret)
        _mask(settings.access_token)

    @property
    def static(self) -> bool:
        """True when the connection has a fixed access token (no renewal possible)."""
        return self.settings.uses_static_token

    def get(self, session: requests.Session | None = None) -> str:
        """A usable token's value (sync)."""
        return self.get_token(session).value

    async def aget(self, session: aiohttp.ClientSession) -> str:
        """A usable token's value (async)."""
        return (await self.aget_token(session)).value

    def cached(self) -> AccessToken | None:
        """The static token, or the cached one if it needs no renewal: no IMS request needed."""
        if self.settings.access_token:
            return AccessToken(value=self.settings.access_token, expires_at=math.inf, ttl=0.0)
        return self.cache.peek(self.key)

    def get_token(self, session: requests.Session | None = None) -> AccessToken:
        """A usable token (sync), from IMS only if none is cached."""
        fetch = lambda: fetch_token(self.settings, self.policy, session)  # noqa: E731
        shared = self.shared
        shared_fetch = fetch if shared is None else lambda: shared.get(fetch)
        return self.cached() or self.cache.get(self.key, shared_fetch)

    async def aget_token(self, session: aiohttp.ClientSession) -> AccessToken:
        """A usable token (async), from IMS only if none is cached."""
        fetch = lambda: afetch_token(self.settings, self.policy, session)  # noqa: E731
        shared = self.shared
        shared_fetch = fetch if shared is None else lambda: shared.aget(fetch)
        return self.cached() or await self.cache.aget(self.key, shared_fetch)

    def after_refusal(self, api_error: FlowServiceApiError, refused: AccessToken, renewals: Renewals) -> None:
        """A 401 answered ``refused``: raise the auth error unless renewing may help, else forget it.

        Renewing cannot help a static token or Flow Service's own 401s, nor once ``renewals`` says
        the credentials are proven wrong (or its bound is reached).
        """
        if self.static or not self.is_token_refusal(api_error) or not renewals.another(refused):
            raise self.refused_error(api_error)
        self.invalidate(refused.value)

    def invalidate(self, value: str) -> None:
        """The gateway refused ``value``: forget it if it is still the cached one (in memory and file)."""
        if self.shared is not None:
            self.shared.discard(value)
        if not self.settings.access_token and self.cache.invalidate(self.key, value):
            log.info(
                "The gateway refused the cached access token of connection '%s'; renewing it.",
                self.settings.conn_id,
            )

    @staticmethod
    def is_token_refusal(api_error: FlowServiceApiError) -> bool:
        """True when a 401 is about the token (gateway ``401xxx`` or no code), so renewing may help.

        Flow Service's own 401s (``2001-401`` / ``2002-401``: org header missing or wrong) are not.
        """
        code = api_error.error_code or ""
        return not code or (code.isdigit() and code.startswith("401"))

    def refused_error(self, api_error: FlowServiceApiError) -> FlowServiceAuthError:
        """The error for a 401 that renewal could not fix (or that no renewal can fix: static token)."""
        conn_id = self.settings.conn_id
        if not self.is_token_refusal(api_error):
            why = f"connection '{conn_id}' was refused; fix its org_id extra as the hint says"
        elif self.static:
            why = (
                f"the static access_token of connection '{conn_id}' was refused and cannot be "
                "renewed. Replace extra access_token with a current token, or remove it and set the client "
                "secret as the password so tokens are fetched and renewed automatically"
            )
        else:
            why = (
                f"a freshly issued IMS token of connection '{conn_id}' was refused too. "
                "Check that org_id belongs to the credential and that the credential has the "
                "Experience Platform API"
            )
        return FlowServiceAuthError(
            f"{api_error} -- {why}.",
            status_code=api_error.status_code,
            error_code=api_error.error_code,
            title=api_error.title,
            detail=api_error.detail,
            request_id=api_error.request_id,
            method=api_error.method,
            url=api_error.url,
            run_id=api_error.run_id,
        )


__all__ = [
    "TOKEN_CACHE",
    "AccessToken",
    "Renewals",
    "TokenCache",
    "TokenProvider",
    "TransientFailure",
    "afetch_token",
    "fetch_token",
    "token_key",
]

