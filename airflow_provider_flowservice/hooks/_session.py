"""One ``aiohttp.ClientSession`` per event loop, shared by every async hook on that loop.

A triggerer runs hundreds of triggers in one loop: a session each would cost each trigger an SSL
context and connections of its own. The session's connector is the pool (at most
:data:`MAX_CONNECTIONS`); TLS settings and timeouts travel with each request, so connections of
different verify settings never mix. The session is closed when the last hook lets go.

Proxies: :func:`env_proxy` reads ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` / ``NO_PROXY`` as
``requests`` does. ``trust_env`` stays off because it would also read ``~/.netrc`` credentials.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import urllib.request
import weakref
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from airflow_provider_flowservice.hooks._api import USER_AGENT

if TYPE_CHECKING:
    from multidict import CIMultiDictProxy

MAX_CONNECTIONS = 100
"""Connections per loop: enough for many triggers polling at once; more would only load the server."""


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url``, or None (``NO_PROXY`` honoured)."""
    proxies = urllib.request.getproxies_environment()
    parts = urlsplit(url)
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.netloc):
        return None
    return proxy


@dataclass(frozen=True)
class Reply:
    """A response read in full: what ``_errors.ResponseLike`` and ``_api.decode_response`` use."""

    status_code: int
    headers: CIMultiDictProxy[str]
    content: bytes

    @cached_property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


_contexts: dict[str, ssl.SSLContext] = {}
_contexts_lock = threading.Lock()


def _context(bundle: str) -> ssl.SSLContext:
    with _contexts_lock:
        context = _contexts.get(bundle)
        if context is None:
            import os

            if os.path.isdir(bundle):
                context = ssl.create_default_context(capath=bundle)
            else:
                context = ssl.create_default_context(cafile=bundle)
            _contexts[bundle] = context
        return context


async def ssl_for(verify: bool | str) -> ssl.SSLContext | bool:
    """``False`` or the SSL context trusting ``verify`` (a bundle path), built once per process.

    Loading a CA bundle reads a file and costs milliseconds of CPU: done off the loop, once.
    """
    if verify is False:
        return False
    bundle = str(verify)
    context = _contexts.get(bundle)
    if context is None:
        context = await asyncio.to_thread(_context, bundle)
    return context


@dataclass
class _Shared:
    session: aiohttp.ClientSession
    users: int = 0


_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Shared] = weakref.WeakKeyDictionary()


def acquire() -> aiohttp.ClientSession:
    """The running loop's session (created on first use); pair with :func:`release`."""
    loop = asyncio.get_running_loop()
    shared = _sessions.get(loop)
    if shared is None or shared.session.closed:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, limit_per_host=0),
            cookie_jar=aiohttp.DummyCookieJar(),  # the API sets no cookies; keep none
            trust_env=False,
        )
        shared = _sessions[loop] = _Shared(session)
    shared.users += 1
    return shared.session


async def release(session: aiohttp.ClientSession) -> None:
    """Give the session back; the last user on the loop closes it."""
    loop = asyncio.get_running_loop()
    shared = _sessions.get(loop)
    if shared is None or shared.session is not session:
        await session.close()
        return
    shared.users -= 1
    if shared.users <= 0:
        del _sessions[loop]
        await session.close()


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: Any,
    *,
    headers: dict[str, str],
    ssl_context: ssl.SSLContext | bool,
    timeout: aiohttp.ClientTimeout,
    proxy: str | None,
    params: Any = None,
    json: Any = None,
    data: Any = None,
) -> Reply:
    """One request, redirects never followed (credentials stay on their host); the body read in full."""
    async with session.request(
        method,
        url,
        params=query_pairs(params),
        json=json,
        data=data,
        headers=headers,
        ssl=ssl_context,
        timeout=timeout,
        proxy=proxy,
        allow_redirects=False,
    ) as resp:
        body = await resp.read()
        return Reply(resp.status, resp.headers, body)


def query_pairs(params: Any) -> list[tuple[str, str]] | None:
    """Query pairs, a list value repeated: ``{"property": ["a", "b"]}`` -> two ``property`` pairs."""
    if not params:
        return None
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        for one in value if isinstance(value, list | tuple) else [value]:
            pairs.append((key, str(one)))
    return pairs


def timeout_of(connect: float, read: float) -> aiohttp.ClientTimeout:
    """Connect (including the wait for a free pooled connection) and read timeouts; no total."""
    return aiohttp.ClientTimeout(total=None, connect=connect + read, sock_connect=connect, sock_read=read)


__all__ = ["USER_AGENT", "Reply", "acquire", "env_proxy", "release", "send", "ssl_for", "timeout_of"]
