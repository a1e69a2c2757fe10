"""Per event loop and transport settings, one set of HTTP connections shared by every async hook.

A triggerer runs hundreds of triggers in one event loop. A client each would cost every trigger
an SSL context (tens of milliseconds of CPU to load the CA bundle, and hundreds of KB) and a
keep-alive connection of its own. The hooks of one loop share one :class:`SharedClients`: one SSL
context and at most :data:`MAX_LANES` connections; it is closed when the last hook lets go.

Measured with ``benchmarks/triggerer_load.py`` (1000 triggers polling in one loop), three choices
keep a poll cheap:

- Lanes, not one pool: httpcore re-scans every connection, and every queued request against every
  connection, whenever a request starts or ends; behind one 100-connection pool that was 65% of
  the CPU and stalled the loop. A lane holds one connection, so its pool has nothing to scan, and
  a semaphore bounds the requests in flight without any queue scan.
- Flow Service requests go straight to a lane's ``httpx.AsyncHTTPTransport``, not through
  ``httpx.AsyncClient``: the client's per-request work (URL merging, a cookie jar, auth and redirect
  machinery) was a quarter of the HTTP cost, for features we do not use (the API sets no cookies,
  and redirects are refused anyway so the token never reaches another host). The client also
  left every response in a reference cycle (48 objects) for the cyclic garbage collector, whose
  full passes stall a loop of 1000 triggers for 100+ ms.
- Proxies still work: lanes use the proxy that ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY``
  name for the API host unless ``NO_PROXY`` exempts it, as ``requests`` (the sync hook) reads them.
  IMS token requests (rare) go through an ordinary ``httpx.AsyncClient``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import urllib.request
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from airflow_provider_flowservice.connection import FlowServiceConnectionSettings
from airflow_provider_flowservice.hooks._api import USER_AGENT

#: Requests in flight (and connections) per loop and transport settings: enough for many
#: triggers polling at once; more would only load the server.
MAX_LANES = 100
_ONE_CONNECTION = httpx.Limits(max_connections=1, max_keepalive_connections=1)


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url``, or None (``NO_PROXY`` honoured)."""
    proxies = urllib.request.getproxies_environment()
    parts = urlsplit(url)
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.netloc):
        return None
    return proxy


class SharedClients:
    """Up to ``lanes`` single-connection transports sharing one SSL context, and a client for IMS.

    :meth:`request` borrows a free lane for one request and gives it back once the response has
    been read. Lanes are made on demand and reused last-in first-out, so the busiest keep their
    connections warm and idle ones let theirs expire.
    """

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        timeout: httpx.Timeout,
        *,
        proxy: str | None = None,
        lanes: int = MAX_LANES,
    ) -> None:
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.proxy = proxy
        self.is_closed = False
        self._timeouts = timeout.as_dict()
        self._slots = asyncio.Semaphore(lanes)
        self._idle: list[httpx.AsyncHTTPTransport] = []
        self._lanes: list[httpx.AsyncHTTPTransport] = []
        self._token_client: httpx.AsyncClient | None = None

    async def request(
        self, method: str, url: httpx.URL | str, *, headers: Any, params: Any = None, json: Any = None
    ) -> httpx.Response:
        """Send one request on a free lane; the response comes back read and closed.

        :raises httpx.PoolTimeout: no lane came free within the pool timeout.
        """
        request = httpx.Request(
            method, url, params=params, json=json, headers=headers, extensions={"timeout": self._timeouts}
        )
        async with self._lane() as transport:
            response = await transport.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
        response.request = request
        return response

    @property
    def token_client(self) -> httpx.AsyncClient:
        """An ordinary client for IMS token requests (proxies from the environment, as httpx reads them)."""
        if self._token_client is None:
            if self.is_closed:
                raise RuntimeError("Cannot send a request: the shared HTTP clients have been closed.")
            self._token_client = httpx.AsyncClient(
                timeout=self.timeout,
                verify=self.ssl_context,
                follow_redirects=False,  # Authorization must never reach another host
                headers={"User-Agent": USER_AGENT},
            )
        return self._token_client

    @contextlib.asynccontextmanager
    async def _lane(self) -> AsyncIterator[httpx.AsyncHTTPTransport]:
        if self._slots.locked():
            try:
                async with asyncio.timeout(self.timeout.pool):
                    await self._slots.acquire()
            except TimeoutError:
                raise httpx.PoolTimeout(
                    f"all {len(self._lanes)} connections stayed busy for {self.timeout.pool} s"
                ) from None
        else:
            await self._slots.acquire()
        try:
            transport = self._idle.pop() if self._idle else self._new_lane()
            try:
                yield transport
            finally:
                self._idle.append(transport)
        finally:
            self._slots.release()

    def _new_lane(self) -> httpx.AsyncHTTPTransport:
        if self.is_closed:
            raise RuntimeError("Cannot send a request: the shared HTTP clients have been closed.")
        transport = httpx.AsyncHTTPTransport(
            verify=self.ssl_context, limits=_ONE_CONNECTION, proxy=self.proxy
        )
        self._lanes.append(transport)
        return transport

    async def aclose(self) -> None:
        """Close every lane (and its connection) and the token client."""
        self.is_closed = True
        lanes, self._lanes, self._idle = self._lanes, [], []
        for transport in lanes:
            await transport.aclose()
        if self._token_client is not None:
            await self._token_client.aclose()


_Key = tuple[Any, float, float, str | None]


@dataclass
class _Shared:
    client: SharedClients
    users: int = 0


@dataclass
class _LoopClients:
    lock: asyncio.Lock
    by_key: dict[_Key, _Shared]


_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClients] = weakref.WeakKeyDictionary()


def _key(s: FlowServiceConnectionSettings) -> _Key:
    return (s.verify, s.connect_timeout, s.read_timeout, env_proxy(s.base_url))


def _ssl_context(s: FlowServiceConnectionSettings) -> ssl.SSLContext:
    if isinstance(s.verify, str):
        return ssl.create_default_context(cafile=s.verify)
    return httpx.create_ssl_context(verify=s.verify)


def _loop_clients() -> _LoopClients:
    loop = asyncio.get_running_loop()
    entry = _loops.get(loop)
    if entry is None:
        entry = _loops[loop] = _LoopClients(asyncio.Lock(), {})
    return entry


async def acquire(s: FlowServiceConnectionSettings) -> SharedClients:
    """The shared clients for ``s`` on the running loop (built on first use)."""
    clients = _loop_clients()
    key = _key(s)
    async with clients.lock:
        shared = clients.by_key.get(key)
        if shared is None or shared.client.is_closed:
            # An SSL context loads CA certificates from disk: keep that off the event loop.
            context = await asyncio.to_thread(_ssl_context, s)
            timeout = httpx.Timeout(s.read_timeout, connect=s.connect_timeout)
            shared = clients.by_key[key] = _Shared(SharedClients(context, timeout, proxy=key[3]))
        shared.users += 1
        return shared.client


async def release(s: FlowServiceConnectionSettings, client: SharedClients) -> None:
    """Give the clients back; the last user closes them (found by identity: the environment's
    proxy settings, part of the key, may have changed since :func:`acquire`)."""
    clients = _loop_clients()
    async with clients.lock:
        key = next((k for k, shared in clients.by_key.items() if shared.client is client), None)
        if key is None:
            await client.aclose()
            return
        shared = clients.by_key[key]
        shared.users -= 1
        if shared.users <= 0:
            del clients.by_key[key]
            await client.aclose()
