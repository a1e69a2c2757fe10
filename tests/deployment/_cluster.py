"""A real distributed Airflow deployment on 127.0.0.1: PostgreSQL, Redis, CeleryExecutor, many services.

- PostgreSQL: a throw-away server (``tests/system/_postgres.py``, shared with the browser tests),
  stopped by its PID.
- Redis: ``redis-server`` on a free port, no persistence, stopped by its PID.
- Airflow 3.x: ``api-server``, ``scheduler``, ``dag-processor``, Celery workers and triggerers, each
  in its own process group (``tests/system/_airflow_services.py`` starts them), so one can be
  killed (``SIGKILL`` to the group: the worker and every task process under it) and restarted.

Every wait is bounded; every process is stopped by PID in ``stop()`` even when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from airflow_provider_flowservice.testing.emulator import RecordedRequest
from tests.system._airflow_services import (
    AirflowDeployment,
    BackgroundServer,
    Service,
    free_port,
    start_logged,
    wait_for,
)
from tests.system._postgres import NO_POSTGRES_ENV, postgres_missing, stop_group

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
INSTALL_HINT = "apt-get update && apt-get install -y postgresql redis-server"


def missing_binaries() -> list[str]:
    """What the deployment test needs from Debian and this machine lacks."""
    missing = []
    no_postgres = postgres_missing()
    if no_postgres:
        missing.append(f"PostgreSQL ({no_postgres})")
    if not Path(REDIS_SERVER).exists():
        missing.append("redis-server")
    return missing


def why_skipped() -> str | None:
    """The deployment test's one skip line (None when it can run): what to install, or what to unset."""
    missing = missing_binaries()
    if not missing:
        return None
    if missing == [f"PostgreSQL ({NO_POSTGRES_ENV}=1)"]:
        return f"PostgreSQL is turned off by {NO_POSTGRES_ENV}=1; unset it to run the deployment test"
    return f"needs {', '.join(missing)}; install them with: {INSTALL_HINT}"


class RedisServer(BackgroundServer):
    """``redis-server`` on a free port of 127.0.0.1, no persistence."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.log_path = workdir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = start_logged(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--protected-mode",
                "yes",
            ],
            self.log_path,
        )
        import socket

        def ready() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")

        wait_for("Redis to answer PING", ready, 30, interval=0.2)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def pause(self, seconds: float) -> None:
        """Freeze Redis (SIGSTOP) for ``seconds``, then let it go on (SIGCONT): a broker outage."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
            stop_group(self.proc, signal.SIGTERM)


@dataclass
class Kill:
    """One fault the test caused: what, to which service, when (time.time())."""

    kind: str
    service: str
    at: float
    pid: int = 0
    note: str = ""


@dataclass
class CeleryDeployment:
    """The Airflow side: services by name (``worker-1``, ``triggerer-2``, ...), kill and restart by PID."""

    airflow: AirflowDeployment
    commands: dict[str, list[str]] = field(default_factory=dict)
    owners: dict[int, str] = field(default_factory=dict)
    """PID -> service name, for every process ever seen under a service (kept after it dies)."""
    dead: set[int] = field(default_factory=set)
    """PIDs of service main processes the test killed (ignored by ``check_alive``)."""
    kills: list[Kill] = field(default_factory=list)

    def start(self, name: str, args: list[str]) -> Service:
        self.commands[name] = args
        self.airflow.start_cli_job(name, args)
        service = self.airflow.services[-1]
        self.owners[service.proc.pid] = name
        return service

    def current(self, name: str) -> Service:
        """The newest process started for ``name``."""
        return [s for s in self.airflow.services if s.name == name][-1]

    def names(self, prefix: str) -> list[str]:
        return sorted({s.name for s in self.airflow.services if s.name.startswith(prefix)})

    def sample_owners(self) -> None:
        """Remember which service each live process belongs to (its process tree, children included)."""
        for service in self.airflow.services:
            if service.proc.poll() is not None:
                continue
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(service.proc.pid).children(recursive=True):
                    self.owners.setdefault(child.pid, service.name)

    def owner_of(self, pid: int | None, parents: tuple[int, ...] = ()) -> str | None:
        """The service a PID belongs to: known already, or found among the parents the emulator saw
        when the request arrived (a task process may be gone since), or among its live parents."""
        if pid is None:
            return None
        if pid in self.owners:
            return self.owners[pid]
        for parent in parents:
            if parent in self.owners:
                self.owners[pid] = self.owners[parent]
                return self.owners[pid]
        with contextlib.suppress(psutil.Error):
            for live in psutil.Process(pid).parents():
                if live.pid in self.owners:
                    self.owners[pid] = self.owners[live.pid]
                    return self.owners[pid]
        return None

    def sender_of(self, request: RecordedRequest) -> str | None:
        """The service that sent an emulator request (``identify_peers``)."""
        return self.owner_of(request.peer_pid, request.peer_parents)

    def kill(self, name: str, kind: str, note: str = "") -> Kill:
        """SIGKILL a service's whole process group and every descendant (a machine-crash for it)."""
        service = self.current(name)
        self.sample_owners()
        descendants: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            descendants = psutil.Process(service.proc.pid).children(recursive=True)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(service.proc.pid, signal.SIGKILL)
        for proc in descendants:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        service.proc.wait(timeout=10)
        psutil.wait_procs(descendants, timeout=10)
        self.dead.add(service.proc.pid)
        record = Kill(kind, name, time.time(), service.proc.pid, note)
        self.kills.append(record)
        return record

    def terminate(self, name: str, kind: str, grace: float = 30) -> Kill:
        """SIGTERM a service's process group (a clean restart), SIGKILL if it lingers."""
        service = self.current(name)
        self.sample_owners()
        stop_group(service.proc, signal.SIGTERM, grace)
        self.dead.add(service.proc.pid)
        record = Kill(kind, name, time.time(), service.proc.pid)
        self.kills.append(record)
        return record

    def restart(self, name: str) -> Service:
        return self.start(name, self.commands[name])

    def check_alive(self) -> None:
        for service in self.airflow.services:
            if service.proc.pid in self.dead:
                continue
            code = service.proc.poll()
            if code is not None:
                raise RuntimeError(f"airflow {service.name} (pid {service.proc.pid}) exited with code {code}")

    def wait_api_ready(self, timeout: float) -> None:
        """Wait until the API server answers its health endpoint; raise early if a live service died."""
        import urllib.request

        url = f"http://127.0.0.1:{self.airflow.api_port}/api/v2/monitor/health"

        def probe() -> bool:
            self.check_alive()
            with urllib.request.urlopen(url, timeout=5) as response:
                return bool(response.status == 200)

        wait_for("the API server's health endpoint", probe, timeout)

    def service_logs(self) -> dict[str, str]:
        paths: Iterable[Path] = {s.log_path for s in self.airflow.services}
        return {str(p): p.read_text(errors="replace") for p in paths if p.exists()}
