"""IMS tokens shared by the processes of one OS user on one host: one IMS request per token lifetime.

The process-wide cache in :mod:`_auth` never helps a reschedule-mode sensor (each poke is a new
process) nor Airflow 3 task processes. This cache sits behind it: on a miss in memory, a process
reads a small file before asking IMS, and writes the token it got for the next process.

What a security reviewer checks (threat model: docs/connection.md, "Token cache"):

- One file per credentials, named by a hash of (IMS URL, client id, sha256 of the secret, scopes):
  it holds the access token, its expiry and nothing else; never the secret.
- The directory is private: owned by this user, mode 0700, not a symlink. It is opened once per
  operation with ``O_NOFOLLOW`` and every file is reached through that descriptor (``dir_fd``), so a
  path swapped under us is never followed. A directory or file with another owner or looser mode is
  refused with a warning naming it (the cache is then off for that process, tokens come from IMS).
- Files are 0600, created with ``O_EXCL | O_NOFOLLOW`` as a temporary file and renamed over the
  entry (``os.replace``), so a reader sees the old or the new token, never half of one.
- One writer at a time per credentials: an ``fcntl.flock`` on a lock file, waited for at most
  :data:`LOCK_WAIT_SECONDS` (then the process asks IMS itself). Whoever gets the lock reads the file
  again first, so N processes starting together make one IMS request.
- A token is used only while fresh by the same rule as in memory (renewed before expiry with the
  same margin), the expiry counted on both the monotonic and the wall clock, the earlier winning.
  After a 401 the entry is deleted if it still holds the refused token.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import stat
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

ENV_DIR = "FLOW_SERVICE_TOKEN_CACHE_DIR"
"""Environment variable naming the cache directory (default: see :func:`default_directory`)."""
LOCK_WAIT_SECONDS = 30.0
"""Longest wait for another process's IMS request before making our own."""
MAX_FILE_BYTES = 64 * 1024
"""A bigger file is not ours: ignored."""
_FORMAT = 1
_DIR_NAME = "airflow-flowservice-tokens"
_warned: set[tuple[str, str]] = set()


class CachedToken(Protocol):
    """What :mod:`_auth`'s ``AccessToken`` offers (monotonic ``expires_at``)."""

    @property
    def value(self) -> str: ...
    @property
    def expires_at(self) -> float: ...
    @property
    def ttl(self) -> float: ...
    def is_fresh(self, now: float | None = None) -> bool: ...


T = TypeVar("T", bound=CachedToken)


class UnsafeLocation(Exception):
    """The directory or a file in it is not private to this user."""


def default_directory() -> str:
    """``$FLOW_SERVICE_TOKEN_CACHE_DIR``, else ``$XDG_RUNTIME_DIR/airflow-flowservice-tokens`` when that
    runtime dir is private to us, else ``<tempdir>/airflow-flowservice-tokens-<uid>``."""
    explicit = os.environ.get(ENV_DIR, "").strip()
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    runtime = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    if runtime and os.path.isabs(runtime):
        try:
            _check_private(os.lstat(runtime), runtime, want_dir=True)
            return os.path.join(runtime, _DIR_NAME)
        except (OSError, UnsafeLocation):
            pass
    return os.path.join(tempfile.gettempdir(), f"{_DIR_NAME}-{os.geteuid()}")


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


_BOOT_ID = _boot_id()


def _check_private(st: os.stat_result, path: str, *, want_dir: bool) -> None:
    kind_ok = stat.S_ISDIR(st.st_mode) if want_dir else stat.S_ISREG(st.st_mode)
    what = "directory" if want_dir else "file"
    if not kind_ok:
        raise UnsafeLocation(f"{path} is not a regular {what} (a symlink or something else)")
    if st.st_uid != os.geteuid():
        raise UnsafeLocation(f"{path} belongs to uid {st.st_uid}, not to this user (uid {os.geteuid()})")
    if st.st_mode & 0o077:
        wanted = "0700" if want_dir else "0600"
        raise UnsafeLocation(
            f"{path} has mode {stat.S_IMODE(st.st_mode):04o}; other users could read it (want {wanted})"
        )


def _warn_once(path: str, message: str) -> None:
    if (path, message) not in _warned:
        _warned.add((path, message))
        log.warning(
            "Not using the IMS token cache file: %s. Tokens are requested from IMS by each process. "
            "Fix: remove it or `chmod 700` the directory / `chmod 600` the file, or set %s to a private "
            "directory, or set connection extra token_cache to false.",
            message,
            ENV_DIR,
        )


def cache_name(key: object) -> str:
    """The file name for a token key (already free of the secret: it holds its sha256 only)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=list).encode()).hexdigest()


class TokenFile(Generic[T]):
    """The cross-process entry of one credentials' token: read, write under a lock, discard."""

    def __init__(self, directory: str, name: str, make: Callable[[str, float, float], T]) -> None:
        self.directory = directory
        self.name = name
        self._make = make

    # -- directory and files, always through a descriptor of the checked directory

    def _open_dir(self) -> int:
        try:
            os.mkdir(self.directory, 0o700)
        except FileExistsError:
            pass
        except FileNotFoundError:
            os.makedirs(os.path.dirname(self.directory), exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.directory, 0o700)
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            _check_private(os.fstat(fd), self.directory, want_dir=True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @contextlib.contextmanager
    def _dir(self) -> Iterator[int | None]:
        """The directory's descriptor, or None (warned once) when it is unusable."""
        try:
            fd = self._open_dir()
        except UnsafeLocation as exc:
            _warn_once(self.directory, str(exc))
            yield None
            return
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(self.directory):
                _warn_once(self.directory, f"{self.directory} is a symlink")
            else:
                _warn_once(self.directory, f"{self.directory}: {exc.strerror}")
            yield None
            return
        try:
            yield fd
        finally:
            os.close(fd)

    def _read_raw(self, dir_fd: int) -> dict[str, object] | None:
        path = os.path.join(self.directory, self.name)
        try:
            fd = os.open(self.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            _warn_once(path, f"{path}: {exc.strerror}")
            return None
        try:
            st = os.fstat(fd)
            _check_private(st, path, want_dir=False)
            if st.st_size > MAX_FILE_BYTES:
                raise UnsafeLocation(f"{path} is {st.st_size} bytes, too big to be a token entry")
            data = os.read(fd, MAX_FILE_BYTES + 1)
        except UnsafeLocation as exc:
            _warn_once(path, str(exc))
            return None
        finally:
            os.close(fd)
        try:
            doc = json.loads(data)
        except ValueError:
            return None  # torn by a crash before rename, or not ours: ask IMS and overwrite it
        return doc if isinstance(doc, dict) and doc.get("format") == _FORMAT else None

    def _token_of(self, doc: dict[str, object] | None) -> T | None:
        if doc is None or doc.get("name") != self.name:
            return None
        value, ttl, wall = doc.get("access_token"), doc.get("ttl"), doc.get("expires_at_unix")
        if not isinstance(value, str) or not value or not value.isprintable():
            return None
        if not all(isinstance(x, int | float) and math.isfinite(x) for x in (ttl, wall)):
            return None
        assert isinstance(ttl, int | float) and isinstance(wall, int | float)
        if ttl <= 0:
            return None
        now = time.monotonic()
        expires_at = now + min(float(wall) - time.time(), float(ttl))  # never longer than its lifetime
        mono = doc.get("expires_at_monotonic")
        if _BOOT_ID and doc.get("boot_id") == _BOOT_ID and isinstance(mono, int | float):
            expires_at = min(expires_at, float(mono))  # the same clock as the writer: no clock jumps
        token = self._make(value, expires_at, float(ttl))
        return token if token.is_fresh(now) else None

    def _write(self, dir_fd: int, token: CachedToken) -> None:
        doc = {
            "format": _FORMAT,
            "name": self.name,
            "access_token": token.value,
            "ttl": token.ttl,
            "expires_at_unix": time.time() + (token.expires_at - time.monotonic()),
            "expires_at_monotonic": token.expires_at,
            "boot_id": _BOOT_ID,
        }
        tmp = f".{self.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd
        )
        try:
            try:
                os.fchmod(fd, 0o600)  # O_CREAT's mode is already 0600 minus umask; make it exact
                os.write(fd, json.dumps(doc).encode())
            finally:
                os.close(fd)
            os.replace(tmp, self.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise

    def _try_lock(self, dir_fd: int) -> int | None:
        """The locked lock file's descriptor, or None if another process holds it."""
        fd = os.open(
            f"{self.name}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    # -- the operations _auth.py calls

    def get(self, fetch: Callable[[], T]) -> T:
        """The entry's fresh token, else ``fetch()``'s (one fetching process at a time), stored."""
        with self._dir() as dir_fd:
            if dir_fd is None:
                return fetch()
            token = self._token_of(self._read_raw(dir_fd))
            if token is not None:
                return token
            deadline, pause, lock_fd = time.monotonic() + LOCK_WAIT_SECONDS, 0.02, None
            while (lock_fd := self._try_lock(dir_fd)) is None and time.monotonic() < deadline:
                time.sleep(pause)
                pause = min(pause * 2, 0.25)
            try:
                return self._locked_get(dir_fd, lock_fd, fetch)
            finally:
                if lock_fd is not None:
                    os.close(lock_fd)  # closing the descriptor releases the flock

    def _locked_get(self, dir_fd: int, lock_fd: int | None, fetch: Callable[[], T]) -> T:
        token = self._recheck(dir_fd, lock_fd)
        if token is not None:
            return token
        token = fetch()
        self._store(dir_fd, token)
        return token

    async def aget(self, fetch: Callable[[], Awaitable[T]]) -> T:
        """Async twin of :meth:`get`: the lock is tried without blocking, waits are ``asyncio.sleep``."""
        with self._dir() as dir_fd:
            if dir_fd is None:
                return await fetch()
            token = self._token_of(self._read_raw(dir_fd))
            if token is not None:
                return token
            deadline, pause, lock_fd = time.monotonic() + LOCK_WAIT_SECONDS, 0.02, None
            while (lock_fd := self._try_lock(dir_fd)) is None and time.monotonic() < deadline:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.25)
            try:
                token = self._recheck(dir_fd, lock_fd)
                if token is not None:
                    return token
                token = await fetch()
                self._store(dir_fd, token)
                return token
            finally:
                if lock_fd is not None:
                    os.close(lock_fd)

    def _recheck(self, dir_fd: int, lock_fd: int | None) -> T | None:
        """With the lock: the token the holder before us may have stored. Without: None."""
        if lock_fd is None:
            log.info(
                "Another process has been fetching an IMS token for %.0f s; asking IMS too.",
                LOCK_WAIT_SECONDS,
            )
            return None
        return self._token_of(self._read_raw(dir_fd))

    def _store(self, dir_fd: int, token: CachedToken) -> None:
        try:
            self._write(dir_fd, token)
        except OSError as exc:  # a full disk must not fail the task: the token is good in memory
            _warn_once(
                self.directory, f"writing {os.path.join(self.directory, self.name)} failed: {exc.strerror}"
            )

    def discard(self, value: str) -> bool:
        """After a 401: delete the entry if it still holds ``value``; True if deleted.

        No lock: a writer only ever stores a token it just got from IMS, so the worst race deletes
        a fresh entry (one more IMS request), never keeps a refused one.
        """
        with self._dir() as dir_fd:
            if dir_fd is None:
                return False
            doc = self._read_raw(dir_fd)
            held = doc.get("access_token") if doc else None
            if not isinstance(held, str) or not hmac.compare_digest(held.encode(), value.encode()):
                return False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.name, dir_fd=dir_fd)
            return True


def token_file(
    key: object, make: Callable[[str, float, float], T], directory: str | None = None
) -> TokenFile[T]:
    """The shared entry for ``key`` in ``directory`` (default :func:`default_directory`, read now)."""
    return TokenFile(directory or default_directory(), cache_name(key), make)
