"""One connection read per (event loop, connection id), shared by the loop's async hooks for 60 s.

A triggerer runs every waiting trigger in one loop, and each trigger has a hook of its own. Were
each hook to read its Airflow connection, validate it, build its token provider, look up its TLS
context and proxy and build its headers, a thousand triggers would do that a thousand times
(and, on Airflow 3, send a thousand connection reads to the supervisor) although they all use the
same few connections. :func:`get` does it once per connection and loop; every hook on the loop
then reuses the result.

Reused for :data:`TTL_SECONDS` at most, so a connection edited in Airflow reaches the triggers
within that time. A failed read is never kept (the next hook reads again), and an auth error
drops the entry (:func:`drop`): a fixed secret is seen on the next request, not after the TTL.
Per loop because the objects it holds (the read's future) belong to one loop.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl

    import aiohttp

    from airflow_provider_flowservice._auth import TokenProvider
    from airflow_provider_flowservice._connection import FlowServiceConnectionSettings
    from airflow_provider_flowservice._retry import RetryPolicy

TTL_SECONDS = 60.0
"""How long one read of a connection serves the loop's hooks; an edit is seen within this."""

clock: Callable[[], float] = time.monotonic
"""The clock that ages entries (a test may replace it)."""


@dataclass
class ConnState:
    """What every request on one connection needs, built once from one read of it."""

    settings: FlowServiceConnectionSettings
    ssl_context: ssl.SSLContext | bool
    timeout: aiohttp.ClientTimeout
    proxy: str | None
    read_at: float
    dropped: bool = False
    """Set by :func:`drop`: the hooks holding it read the connection again."""
    _providers: dict[RetryPolicy, TokenProvider] = field(default_factory=dict)
    _headers: tuple[str, dict[str, str]] | None = None

    def fresh(self, now: float) -> bool:
        """Still to be used: younger than :data:`TTL_SECONDS` and not dropped."""
        return not self.dropped and now - self.read_at < TTL_SECONDS

    def tokens(self, policy: RetryPolicy) -> TokenProvider:
        """The connection's token provider for ``policy`` (its IMS retries), built once."""
        provider = self._providers.get(policy)
        if provider is None:
            from airflow_provider_flowservice._auth import TokenProvider

            provider = self._providers[policy] = TokenProvider(self.settings, policy)
        return provider

    def headers(self, token: str) -> dict[str, str]:
        """A GET's headers with ``token``: the same dict while the token stays the same (never mutated)."""
        last = self._headers
        if last is None or last[0] != token:
            from airflow_provider_flowservice.hooks._api import request_headers

            last = self._headers = (token, request_headers(self.settings, token, has_body=False))
        return last[1]


_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Future[ConnState]]] = (
    weakref.WeakKeyDictionary()
)


async def get(conn_id: str, read: Callable[[str], Awaitable[Any]]) -> ConnState:
    """The loop's state of ``conn_id``: reused while fresh, else read (once, whoever asks meanwhile).

    :param read: reads the Airflow connection without blocking the loop.
    """
    entries = _loops.setdefault(asyncio.get_running_loop(), {})
    future = entries.get(conn_id)
    if future is None or (future.done() and not _usable(future)):
        future = entries[conn_id] = asyncio.ensure_future(_build(conn_id, read))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        raise
    except BaseException:
        if entries.get(conn_id) is future:
            del entries[conn_id]  # a failed read is not kept: the next caller reads again
        raise


def _usable(future: asyncio.Future[ConnState]) -> bool:
    return not future.cancelled() and future.exception() is None and future.result().fresh(clock())


async def _build(conn_id: str, read: Callable[[str], Awaitable[Any]]) -> ConnState:
    from airflow_provider_flowservice._connection import FlowServiceConnectionSettings
    from airflow_provider_flowservice.hooks import _session

    settings = FlowServiceConnectionSettings.from_connection(await read(conn_id))
    return ConnState(
        settings=settings,
        ssl_context=await _session.ssl_for(settings.tls_verify()),
        timeout=_session.timeout_of(settings.connect_timeout, settings.read_timeout),
        proxy=_session.env_proxy(settings.base_url),
        read_at=clock(),
    )


def drop(conn_id: str, state: ConnState) -> None:
    """Forget ``state`` (e.g. after an auth error) so the next request reads the connection again."""
    state.dropped = True
    try:
        entries = _loops.get(asyncio.get_running_loop())
    except RuntimeError:
        return
    if entries is None:
        return
    future = entries.get(conn_id)
    if future is not None and future.done() and not _usable(future):
        del entries[conn_id]


__all__ = ["TTL_SECONDS", "ConnState", "drop", "get"]
