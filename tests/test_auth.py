"""IMS tokens: the process-wide single-flight cache, renewal timing, and the IMS exchange itself."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import aiohttp
import pytest
import requests

from airflow_provider_flowservice._auth import (
    TOKEN_CACHE,
    AccessToken,
    TokenCache,
    TokenProvider,
    _ttl,
    afetch_token,
    fetch_token,
    token_key,
)
from airflow_provider_flowservice._connection import FlowServiceConnectionSettings
from airflow_provider_flowservice._retry import RetryPolicy
from airflow_provider_flowservice.exceptions import FlowServiceAuthError, FlowServiceRetryError
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator

TINY = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02, max_total_seconds=5)
KEY = ("https://ims/token", "client", "hash", ("openid",))


@pytest.fixture(autouse=True)
def _clean_token_cache() -> Iterator[None]:
    TOKEN_CACHE.clear()
    yield
    TOKEN_CACHE.clear()


def token(value: str, ttl: float = 3600) -> AccessToken:
    return AccessToken(value=value, expires_at=time.monotonic() + ttl, ttl=ttl)


def em_settings(em: FlowServiceEmulator, **changes: object) -> FlowServiceConnectionSettings:
    fields: dict[str, object] = {
        "conn_id": "aep_auth",
        "host": em.url,
        "login": em.client_id,
        "password": em.client_secret,
        "extra": {"org_id": em.org_id, "ims_token_url": em.ims_token_url},
    }
    extra = dict(fields["extra"])  # type: ignore[call-overload]
    for key in list(changes):
        if key not in fields:
            extra[key] = changes.pop(key)
    fields.update(changes, extra=extra)
    return FlowServiceConnectionSettings.from_fields(**fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------- AccessToken and the key


def test_renewal_window_is_min_of_five_minutes_and_ten_percent() -> None:
    day = token("a", ttl=86399)
    assert day.renew_at == pytest.approx(day.expires_at - 300)
    short = token("b", ttl=60)
    assert short.renew_at == pytest.approx(short.expires_at - 6)
    tiny = token("c", ttl=2)  # 10% would be 0.2 s: too thin for latency, so 0.5 s (25%)
    assert tiny.renew_at == pytest.approx(tiny.expires_at - 0.5)
    assert token("d", ttl=8).renew_at == pytest.approx(token("d", ttl=8).expires_at - 1.0, abs=0.01)
    now = time.monotonic()
    assert short.is_fresh(now) and not short.is_fresh(short.expires_at - 5) and not short.is_expired(now)
    assert short.is_expired(short.expires_at)
    assert "a-secret-token" not in repr(AccessToken(value="a-secret-token", expires_at=0, ttl=1))


def test_expires_in_is_seconds_with_a_fallback() -> None:
    assert _ttl(86399) == 86399
    assert _ttl("3600") == 3600
    assert _ttl(86_399_000) == pytest.approx(86399)  # the retired JWT exchange answered in ms
    assert _ttl(None) == 3600 and _ttl("soon") == 3600


def test_key_hashes_the_secret() -> None:
    s = FlowServiceConnectionSettings.from_fields(
        conn_id="a", host=None, login="id", password="top-secret", extra={"org_id": "O", "scopes": "a,b"}
    )
    key = token_key(s)
    assert "top-secret" not in repr(key)
    assert key[0] == s.ims_token_url and key[1] == "id" and key[3] == ("a", "b")
    other = FlowServiceConnectionSettings.from_fields(
        conn_id="b", host=None, login="id", password="other", extra={"org_id": "O", "scopes": "a,b"}
    )
    assert token_key(other) != key


# ---------------------------------------------------------------- TokenCache


def test_cache_hit_and_compare_and_invalidate() -> None:
    cache = TokenCache()
    fetched = iter(["t1", "t2", "t3"])
    fetch = lambda: token(next(fetched))  # noqa: E731
    assert cache.get(KEY, fetch).value == "t1"
    assert cache.get(KEY, fetch).value == "t1"
    assert cache.invalidate(KEY, "stale-other-token") is False
    assert cache.get(KEY, fetch).value == "t1"
    assert cache.invalidate(KEY, "t1") is True
    assert cache.get(KEY, fetch).value == "t2"
    assert cache.fetches == 2


def test_token_close_to_expiry_is_renewed() -> None:
    cache = TokenCache()
    values = iter([token("short", ttl=0.2), token("long")])
    assert cache.get(KEY, lambda: next(values)).value == "short"
    time.sleep(0.19)  # within the last 10% of its life
    assert cache.get(KEY, lambda: next(values)).value == "long"


def test_failed_renewal_falls_back_to_the_still_valid_token() -> None:
    cache = TokenCache()
    cache.get(KEY, lambda: token("current", ttl=1.0))
    time.sleep(0.92)  # renewal due, token still valid

    def broken() -> AccessToken:
        raise FlowServiceRetryError("IMS down")

    assert cache.get(KEY, broken).value == "current"
    time.sleep(0.1)  # now expired: nothing to fall back to
    with pytest.raises(FlowServiceRetryError):
        cache.get(KEY, broken)


def test_auth_errors_are_never_masked_by_the_fallback() -> None:
    cache = TokenCache()
    cache.get(KEY, lambda: token("current", ttl=1.0))
    time.sleep(0.92)

    def refused() -> AccessToken:
        raise FlowServiceAuthError("invalid_client")

    with pytest.raises(FlowServiceAuthError):
        cache.get(KEY, refused)


def test_threads_single_flight() -> None:
    cache = TokenCache()
    calls = 0
    lock = threading.Lock()

    def slow_fetch() -> AccessToken:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(0.2)
        return token("shared")

    barrier = threading.Barrier(20)
    results: list[str] = []

    def worker() -> None:
        barrier.wait(timeout=5)
        results.append(cache.get(KEY, slow_fetch).value)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert calls == 1 and results == ["shared"] * 20


async def test_asyncio_tasks_single_flight() -> None:
    cache = TokenCache()
    calls = 0

    async def slow_fetch() -> AccessToken:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1)
        return token("shared")

    values = await asyncio.gather(*(cache.aget(KEY, slow_fetch) for _ in range(50)))
    assert calls == 1 and {v.value for v in values} == {"shared"}


def test_clear_forgets_everything() -> None:
    cache = TokenCache()
    cache.get(KEY, lambda: token("x"))
    cache.clear()
    assert cache.peek(KEY) is None and cache.fetches == 0


# ---------------------------------------------------------------- the IMS exchange (real HTTP)


def test_fetch_token_from_ims(flow_service_emulator: FlowServiceEmulator) -> None:
    em = flow_service_emulator
    issued = fetch_token(em_settings(em), TINY)
    assert issued.value == em.tokens_issued[-1]
    assert issued.ttl == 86399
    (request,) = em.requests
    assert request.body == {
        "grant_type": "client_credentials",
        "client_id": em.client_id,
        "client_secret": em.client_secret,
        "scope": "openid,AdobeID,read_organizations,additional_info.projectedProductContext,session",
    }


def test_token_is_registered_with_the_secrets_masker(flow_service_emulator: FlowServiceEmulator) -> None:
    from airflow.providers.common.compat.sdk import redact

    provider = TokenProvider(em_settings(flow_service_emulator, password="masked-secret-4711"), TINY)
    assert "masked-secret-4711" not in str(redact("x masked-secret-4711 y"))
    provider = TokenProvider(em_settings(flow_service_emulator), TINY)
    value = provider.get()
    assert value not in str(redact(f"token={value}"))


def test_a_secret_too_short_to_mask_is_not_handed_to_airflow(
    flow_service_emulator: FlowServiceEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    # Airflow cannot mask it anyway and would log "Skipping masking for a secret as it's too short".
    from airflow_provider_flowservice import _auth as auth

    handed: list[object] = []
    real = auth.mask_secret
    auth.mask_secret = handed.append  # type: ignore[assignment]
    try:
        TokenProvider(em_settings(flow_service_emulator, access_token="abc", password=None), TINY)
        TokenProvider(em_settings(flow_service_emulator, password="long-enough-secret"), TINY)
    finally:
        auth.mask_secret = real
    assert "abc" not in handed and "long-enough-secret" in handed
    assert "too short" not in caplog.text


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"password": "bad-secret-value-77"}, "invalid client_secret parameter"),
        ({"login": "someone-else"}, "invalid client_id parameter"),
    ],
)
def test_ims_refusal_names_connection_and_ims_error_never_the_secret(
    flow_service_emulator: FlowServiceEmulator, changes: dict[str, str], fragment: str
) -> None:
    settings = em_settings(flow_service_emulator, **changes)
    with pytest.raises(FlowServiceAuthError) as info:
        fetch_token(settings, TINY)
    message = str(info.value)
    assert "'aep_auth'" in message and "invalid_client" in message and fragment in message
    assert "Developer Console" in message
    assert settings.client_secret not in message
    assert flow_service_emulator.token_requests == 1  # refusals are not retried


def test_ims_5xx_and_drops_are_retried(flow_service_emulator: FlowServiceEmulator) -> None:
    em = flow_service_emulator
    em.inject("503", path="/ims")
    em.inject("drop", path="/ims")
    assert fetch_token(em_settings(em), TINY).value == em.tokens_issued[-1]
    assert [r.fault for r in em.requests] == ["503", "drop", None]


def test_ims_outage_ends_in_a_bounded_retry_error(flow_service_emulator: FlowServiceEmulator) -> None:
    em = flow_service_emulator
    em.inject("503", path="/ims", times=10)
    with pytest.raises(FlowServiceRetryError, match="3 attempt"):
        fetch_token(em_settings(em), TINY)


async def test_async_fetch_token(flow_service_emulator: FlowServiceEmulator) -> None:
    em = flow_service_emulator
    async with aiohttp.ClientSession() as client:
        issued = await afetch_token(em_settings(em), TINY, client)
        assert issued.value == em.tokens_issued[-1]
        with pytest.raises(FlowServiceAuthError, match="aep_auth"):
            await afetch_token(em_settings(em, password="nope-123"), TINY, client)


async def test_sync_and_async_providers_share_the_process_cache(
    flow_service_emulator: FlowServiceEmulator,
) -> None:
    em = flow_service_emulator
    settings = em_settings(em)
    sync_value = TokenProvider(settings, TINY).get(requests.Session())
    async with aiohttp.ClientSession() as client:
        async_value = await TokenProvider(em_settings(em), TINY).aget(client)
    assert sync_value == async_value and em.token_requests == 1


def test_static_token_never_calls_ims(flow_service_emulator: FlowServiceEmulator) -> None:
    provider = TokenProvider(em_settings(flow_service_emulator, password=None, access_token="static-1"), TINY)
    assert provider.static and provider.get() == "static-1"
    provider.invalidate("static-1")
    assert provider.get() == "static-1"
    assert flow_service_emulator.token_requests == 0


def test_wrong_token_url_is_named(flow_service_emulator: FlowServiceEmulator) -> None:
    em = flow_service_emulator
    with pytest.raises(FlowServiceAuthError, match="not an IMS token endpoint: check extra ims_url"):
        fetch_token(em_settings(em, ims_token_url=em.url + "/ims/token/v1"), TINY)
