"""The cross-process IMS token file: real processes, real files, the emulator as IMS.

Each test has an empty cache directory of its own (``FLOW_SERVICE_TOKEN_CACHE_DIR``, set by the
autouse fixture in ``tests/conftest.py`` and inherited by the processes a test starts).
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from airflow_provider_flowservice import _token_file_cache
from airflow_provider_flowservice._auth import TOKEN_CACHE, AccessToken
from airflow_provider_flowservice._retry import RetryPolicy
from airflow_provider_flowservice._token_file_cache import ENV_DIR, default_directory
from airflow_provider_flowservice.hooks.flow_service import FlowServiceAsyncHook, FlowServiceHook
from airflow_provider_flowservice.testing.emulator import FlowServiceEmulator

FAST = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05, max_total_seconds=20.0)
SECRET = f"p8e-s3cr3t/+= &%\u00fc-{uuid.uuid4()}"
"""A client secret whose raw, URL-encoded, JSON and base64 forms all differ."""
PROCESSES = 8


@pytest.fixture
def em(monkeypatch: pytest.MonkeyPatch) -> Iterator[FlowServiceEmulator]:
    TOKEN_CACHE.clear()
    with FlowServiceEmulator(client_secret=SECRET, polls_to_finish=1) as emulator:
        emulator.add_flow("flow-1")
        monkeypatch.setenv("AIRFLOW_CONN_FLOW_SERVICE_DEFAULT", emulator.connection_json())
        yield emulator
    TOKEN_CACHE.clear()


def cache_dir() -> Path:
    return Path(os.environ[ENV_DIR])


def entries() -> list[Path]:
    return sorted(p for p in cache_dir().iterdir() if not p.name.endswith(".lock"))


def new_process() -> None:
    """What a new task process starts with: an empty process-wide cache (the file stays)."""
    TOKEN_CACHE.clear()


def call(conn_id: str = "flow_service_default") -> None:
    FlowServiceHook(conn_id, retry=FAST).get_flow("flow-1")


# -- N processes starting together ----------------------------------------------------------------

_LAUNCHER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from airflow_provider_flowservice.hooks.flow_service import FlowServiceHook
    from airflow_provider_flowservice._retry import RetryPolicy

    n, work = int(sys.argv[1]), Path(sys.argv[2])
    gate = work / "go"

    def task(i):
        hook = FlowServiceHook(retry=RetryPolicy(max_attempts=3, initial_backoff=0.01, max_total_seconds=30))
        hook.settings  # read the connection before the start line
        (work / f"ready-{i}").touch()
        deadline = time.monotonic() + 120
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        (work / f"result-{i}").write_text(hook.get_flow("flow-1").id)

    pids = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                task(i)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    sys.exit(max(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids))
    """
)


def run_together(em: FlowServiceEmulator, tmp_path: Path, n: int = PROCESSES) -> None:
    """``n`` task processes (forked, as Airflow's executors start them) call the emulator at one moment."""
    em.inject("slow", path="/ims", delay=0.3, times=n)  # a slow IMS widens the race
    proc = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, str(n), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while len(list(tmp_path.glob("ready-*"))) < n and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.05)
        (tmp_path / "go").touch()
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        assert [(tmp_path / f"result-{i}").read_text() for i in range(n)] == ["flow-1"] * n
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.timeout(400)
def test_processes_starting_together_make_one_ims_request(em: FlowServiceEmulator, tmp_path: Path) -> None:
    run_together(em, tmp_path)
    assert em.token_requests == 1
    assert len(entries()) == 1


@pytest.mark.timeout(400)
def test_with_extra_token_cache_false_each_process_asks_ims(
    em: FlowServiceEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_FLOW_SERVICE_DEFAULT", em.connection_json(token_cache="false"))
    run_together(em, tmp_path, n=3)  # three are enough to show "one each" (and cost less CPU)
    assert em.token_requests == 3
    assert not cache_dir().exists() or not list(cache_dir().iterdir())


# -- what is on disk ------------------------------------------------------------------------------


def test_directory_0700_file_0600_no_temporary_files_left(
    em: FlowServiceEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "fresh" / "tokens"  # created by the cache, parents included
    monkeypatch.setenv(ENV_DIR, str(directory))
    call()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    names = sorted(p.name for p in directory.iterdir())
    assert len(names) == 2 and names[1] == names[0] + ".lock", names
    for path in directory.iterdir():
        st = path.lstat()
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, path
        assert st.st_uid == os.geteuid()


def test_the_secret_is_in_no_form_in_the_file_or_its_name(em: FlowServiceEmulator) -> None:
    call()
    [entry] = entries()
    data = entry.read_bytes() + b"\n" + "\n".join(p.name for p in cache_dir().iterdir()).encode()
    import hashlib

    forms = {
        "raw": SECRET,
        "quote": quote(SECRET, safe=""),
        "quote_plus": quote_plus(SECRET),
        "json": json.dumps(SECRET)[1:-1],
        "json-ascii": json.dumps(SECRET, ensure_ascii=True)[1:-1],
        "base64": base64.b64encode(SECRET.encode()).decode(),
        "sha256": hashlib.sha256(SECRET.encode()).hexdigest(),
    }
    for name, form in forms.items():
        assert form.encode() not in data, name
        assert form.lower().encode() not in data.lower(), name
    doc = json.loads(entry.read_bytes())
    assert set(doc) == {
        "format",
        "name",
        "access_token",
        "ttl",
        "expires_at_unix",
        "expires_at_monotonic",
        "boot_id",
    }
    assert doc["access_token"] == em.tokens_issued[0]


def test_a_new_process_reuses_the_file_and_a_different_secret_does_not(
    em: FlowServiceEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    call()
    new_process()
    call()
    assert em.token_requests == 1
    # Another secret (same client id and URL) is another key: never the first one's token.
    other = json.loads(em.connection_json())
    other["password"] = "another-secret"
    monkeypatch.setenv("AIRFLOW_CONN_OTHER", json.dumps(other))
    with pytest.raises(Exception, match="refused the credentials"):
        call("other")
    assert em.token_requests == 2
    assert len(entries()) == 1


# -- refused, tampered and unsafe files -----------------------------------------------------------


def test_looser_mode_file_is_ignored_and_replaced(
    em: FlowServiceEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    call()
    [entry] = entries()
    entry.chmod(0o644)
    new_process()
    with caplog.at_level(logging.WARNING):
        call()
    assert em.token_requests == 2
    assert "mode 0644" in caplog.text and str(entry) in caplog.text
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600  # the new token replaced it, private again
    assert json.loads(entry.read_text())["access_token"] == em.tokens_issued[1]


def test_file_of_another_owner_is_ignored(em: FlowServiceEmulator, caplog: pytest.LogCaptureFixture) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    call()
    [entry] = entries()
    os.chown(entry, 4242, 4242)
    new_process()
    with caplog.at_level(logging.WARNING):
        call()
    assert em.token_requests == 2
    assert "belongs to uid 4242" in caplog.text


def test_symlinked_file_is_not_followed(em: FlowServiceEmulator, tmp_path: Path) -> None:
    call()
    [entry] = entries()
    planted = tmp_path / "planted.json"
    planted.write_bytes(entry.read_bytes())
    planted.chmod(0o600)
    entry.unlink()
    entry.symlink_to(planted)
    new_process()
    call()
    assert em.token_requests == 2
    assert not entry.is_symlink()  # replaced by a regular file (rename replaces the link, not its target)
    assert json.loads(planted.read_text())["access_token"] == em.tokens_issued[0]


def test_garbage_file_is_ignored(em: FlowServiceEmulator) -> None:
    call()
    [entry] = entries()
    entry.write_text('{"format": 1, "access_token": ')
    new_process()
    call()
    assert em.token_requests == 2


@pytest.mark.parametrize("unsafe", ["mode 0755", "symlink"])
def test_unsafe_directory_is_refused_and_left_alone(
    em: FlowServiceEmulator,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    unsafe: str,
) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o755)
    real.chmod(0o755)
    if unsafe == "symlink":
        real.chmod(0o700)
        monkeypatch.setenv(ENV_DIR, str(tmp_path / "link"))
        (tmp_path / "link").symlink_to(real)
    else:
        monkeypatch.setenv(ENV_DIR, str(real))
    with caplog.at_level(logging.WARNING):
        call()
        new_process()
        call()
    assert em.token_requests == 2  # works, without the cache
    assert list(real.iterdir()) == []
    assert "Not using the IMS token cache file" in caplog.text
    assert ("mode 0755" if unsafe == "mode 0755" else "symlink") in caplog.text


def test_default_directory_is_private_per_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_DIR)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    assert default_directory() == str(tmp_path / f"airflow-flowservice-tokens-{os.geteuid()}")
    runtime = tmp_path / "run-user"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert default_directory() == str(runtime / "airflow-flowservice-tokens")
    runtime.chmod(0o755)  # not private: not used
    assert default_directory() == str(tmp_path / f"airflow-flowservice-tokens-{os.geteuid()}")


# -- expiry and 401 -------------------------------------------------------------------------------


def _auth_renew_margin(ttl: float) -> float:
    """How long before expiry a token of this lifetime is renewed (the rule of AccessToken.renew_at)."""
    token = AccessToken("t", expires_at=100.0, ttl=ttl)
    return 100.0 - token.renew_at


def test_an_entry_past_its_renewal_time_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    with FlowServiceEmulator(client_secret=SECRET, token_ttl=8) as em:
        em.add_flow("flow-1")
        monkeypatch.setenv("AIRFLOW_CONN_FLOW_SERVICE_DEFAULT", em.connection_json())
        call()
        new_process()
        call()
        assert em.token_requests == 1  # fresh: shared
        [entry] = entries()
        expires_at = json.loads(entry.read_text())["expires_at_monotonic"]
        renew_at = expires_at - _auth_renew_margin(8)  # 1 s before expiry
        time.sleep(max(0.0, renew_at + 0.3 - time.monotonic()))  # past renew_at, before expiry
        new_process()
        call()
        assert em.token_requests == 2
        [entry] = entries()
        assert json.loads(entry.read_text())["access_token"] == em.tokens_issued[1]


@pytest.mark.parametrize("clock", ["wall", "monotonic"])
def test_either_clock_saying_expired_wins(em: FlowServiceEmulator, clock: str) -> None:
    call()
    [entry] = entries()
    doc = json.loads(entry.read_text())
    doc["expires_at_unix" if clock == "wall" else "expires_at_monotonic"] -= doc["ttl"]
    entry.write_text(json.dumps(doc))
    new_process()
    call()
    assert em.token_requests == 2


def test_a_refused_token_is_removed_from_the_file(em: FlowServiceEmulator) -> None:
    call()
    refused = em.tokens_issued[0]
    em.revoke_tokens()
    new_process()
    call()  # reads the file, 401, discards it, renews
    assert em.token_requests == 2
    [entry] = entries()
    assert json.loads(entry.read_text())["access_token"] == em.tokens_issued[1] != refused
    new_process()
    call()  # the renewed token from the file
    assert em.token_requests == 2


def test_a_401_does_not_remove_another_processes_newer_token(em: FlowServiceEmulator) -> None:
    call()
    provider = FlowServiceHook(retry=FAST).tokens
    assert provider.shared is not None
    assert provider.shared.discard("an-older-refused-token") is False
    assert len(entries()) == 1
    assert provider.shared.discard(em.tokens_issued[0]) is True
    assert entries() == []


# -- the lock: bounded, and never blocking an event loop ----------------------------------------


def hold_lock() -> int:
    """Take the lock file of the only entry's key, as a process busy fetching would."""
    call()
    [entry] = entries()
    entry.unlink()
    new_process()
    fd = os.open(cache_dir() / f"{entry.name}.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_sync_wait_for_the_lock_is_bounded(em: FlowServiceEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    fd = hold_lock()
    monkeypatch.setattr(_token_file_cache, "LOCK_WAIT_SECONDS", 0.5)
    try:
        started = time.monotonic()
        call()
        waited = time.monotonic() - started
    finally:
        os.close(fd)
    assert 0.5 <= waited < 10
    assert em.token_requests == 2


async def test_async_wait_for_the_lock_leaves_the_event_loop_free(em: FlowServiceEmulator) -> None:
    """The lock is held 1.5 s: a blocking wait would stall the loop that long; ours lets it tick."""
    fd = hold_lock()
    held = True
    ticks_while_held = 0

    async def ticker() -> None:
        nonlocal ticks_while_held
        for _ in range(100):
            await asyncio.sleep(0.02)
            ticks_while_held += held

    async def release_later() -> None:
        nonlocal held
        await asyncio.sleep(1.5)
        held = False
        os.close(fd)

    async with FlowServiceAsyncHook(retry=FAST) as hook:
        results = await asyncio.gather(hook.get_flow("flow-1"), ticker(), release_later())
    assert results[0].id == "flow-1"
    assert em.token_requests == 2  # after the release: the holder stored nothing, so it asked IMS
    # A loop blocked until the release ticks 0 times while held; a free one ~75 (1.5 s / 20 ms).
    # Counted, not timed: one unrelated stall (a GC pass late in a long suite) must not fail it.
    assert ticks_while_held >= 10, ticks_while_held


async def test_async_hook_uses_the_token_a_sync_process_stored(em: FlowServiceEmulator) -> None:
    call()
    new_process()
    async with FlowServiceAsyncHook(retry=FAST) as hook:
        await hook.get_flow("flow-1")
    assert em.token_requests == 1
