"""One ``httpx.AsyncClient`` per event loop and transport settings, shared by every async hook.

A triggerer runs hundreds of triggers in one event loop. A client each would cost every trigger
an SSL context (tens of milliseconds of CPU to load the CA bundle, and hundreds of KB) and a
keep-alive connection of its own. Sharing one client per loop reuses a single context and one
connection pool; the client is closed when the last hook using it lets go.
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from dataclasses import dataclass
from typing import Any

import httpx

from airflow_provider_flowservice.connection import FlowServiceConnectionSettings
from airflow_provider_flowservice.hooks._api import USER_AGENT

#: Enough connections for many triggers polling at once; more would only load the server.
POOL_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100)

_Key = tuple[Any, float, float]


@dataclass
class _Shared:
    client: httpx.AsyncClient
    users: int = 0


@dataclass
class _LoopClients:
    lock: asyncio.Lock
    by_key: dict[_Key, _Shared]


_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClients] = weakref.WeakKeyDictionary()


def _key(s: FlowServiceConnectionSettings) -> _Key:
    return (s.verify, s.connect_timeout, s.read_timeout)


def _build(s: FlowServiceConnectionSettings) -> httpx.AsyncClient:
    verify: Any = s.verify
    if isinstance(verify, str):
        verify = ssl.create_default_context(cafile=verify)
    return httpx.AsyncClient(
        timeout=httpx.Timeout(s.read_timeout, connect=s.connect_timeout),
        verify=verify,
        follow_redirects=False,  # Authorization must never reach another host
        headers={"User-Agent": USER_AGENT},
        limits=POOL_LIMITS,
    )


def _loop_clients() -> _LoopClients:
    loop = asyncio.get_running_loop()
    entry = _loops.get(loop)
    if entry is None:
        entry = _loops[loop] = _LoopClients(asyncio.Lock(), {})
    return entry


async def acquire(s: FlowServiceConnectionSettings) -> httpx.AsyncClient:
    """The shared client for ``s`` on the running loop (built off the loop on first use)."""
    clients = _loop_clients()
    async with clients.lock:
        shared = clients.by_key.get(_key(s))
        if shared is None or shared.client.is_closed:
            # Building a client loads CA certificates from disk: keep it off the event loop.
            shared = clients.by_key[_key(s)] = _Shared(await asyncio.to_thread(_build, s))
        shared.users += 1
        return shared.client


async def release(s: FlowServiceConnectionSettings, client: httpx.AsyncClient) -> None:
    """Give the client back; the last user closes it."""
    clients = _loop_clients()
    async with clients.lock:
        shared = clients.by_key.get(_key(s))
        if shared is None or shared.client is not client:
            await client.aclose()
            return
        shared.users -= 1
        if shared.users <= 0:
            del clients.by_key[_key(s)]
            await client.aclose()
