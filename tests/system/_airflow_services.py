"""Start and stop a real Airflow deployment (scheduler, triggerer, ...) in a throw-away AIRFLOW_HOME.

The services are separate processes with an environment of their own (nothing inherited from the
test session's ``AIRFLOW__*`` settings), each in its own process group so that stopping them also
ends the task and trigger processes they spawned. Every wait here is bounded.

Airflow 3 runs what ``airflow standalone`` runs: ``scheduler``, ``triggerer``, ``dag-processor`` and
``api-server`` (bound to 127.0.0.1 on a free port; tasks reach the metadata DB through its Execution
API), LocalExecutor on sqlite (or on a throw-away PostgreSQL server given as ``postgres=``, see
``_postgres.py``), SimpleAuthManager with every user an admin. Airflow 2.11 runs
``scheduler`` and ``triggerer`` with the SequentialExecutor, the only executor 2.x allows on sqlite.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

if TYPE_CHECKING:  # _postgres imports this module
    from tests.system._postgres import PostgresCluster

T = TypeVar("T")

AIRFLOW_CLI = str(Path(sys.executable).with_name("airflow"))

# Seconds-scale settings so a handful of DAG runs go through in well under a minute. Every one is
# named in the system test's docstring.
FAST_SETTINGS_COMMON = {
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
    # Workers wait longer for the Execution API than the 5 s default (Airflow 3.1+; unused on 2.x).
    "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
    "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "True",
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
}
FAST_SETTINGS_V3 = {
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
    "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
    "AIRFLOW__API__WORKERS": "1",
}
FAST_SETTINGS_V2 = {
    "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "2",
    "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "30",
    "AIRFLOW__SCHEDULER__PARSING_PROCESSES": "1",
    "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "False",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_logged(command: list[str], log_path: Path, **popen: Any) -> subprocess.Popen[bytes]:
    """Start a background server: its output appended to ``log_path``, no stdin, in a process group
    of its own (so stopping the group ends its children too). ``popen``: more ``Popen`` arguments."""
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it; ours is closed once it started
    try:
        return subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **popen,
        )
    finally:
        log.close()


class BackgroundServer:
    """A server a fixture uses as ``with Server(...) as server:``: started on entry, stopped by its
    PID on exit, and stopped as well when starting it fails. Subclasses define ``start`` and ``stop``."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    """Call ``probe`` until it returns something truthy; raise TimeoutError naming ``what`` when late."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = probe()
        except (OSError, sqlite3.Error) as exc:  # e.g. a service still starting; anything else raises
            last_error = exc
            result = None
        if result:
            return result
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


@dataclass
class Service:
    """One Airflow service subprocess and the file its output goes to."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class AirflowDeployment:
    """A real Airflow installation in ``home``: its environment, CLI, services and metadata DB."""

    home: Path
    dags_folder: Path
    extra_env: Mapping[str, str] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)
    api_port: int = 0
    postgres: PostgresCluster | None = None
    """A started PostgreSQL server to use as the metadata database instead of sqlite."""

    def __post_init__(self) -> None:
        from airflow import __version__

        self.airflow_3 = int(__version__.split(".")[0]) >= 3
        self.db_path = self.home / "airflow.db"
        self.logs_dir = self.home / "logs"
        self.service_logs_dir = self.home / "service-logs"
        self.service_logs_dir.mkdir(parents=True, exist_ok=True)
        self.api_port = self.api_port or free_port()
        self.env = self._environment()

    # -- set-up -----------------------------------------------------------------------------------
    def _environment(self) -> dict[str, str]:
        """The services' environment: the caller's minus every Airflow setting, plus ours."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (
                    self.postgres.sqlalchemy_url if self.postgres else f"sqlite:///{self.db_path}"
                ),
                "AIRFLOW__CORE__FERNET_KEY": "",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.logs_dir),
                "PYTHONUNBUFFERED": "1",
                # 2.x executors start `airflow tasks run` from PATH: make it this interpreter's.
                "PATH": os.pathsep.join([str(Path(AIRFLOW_CLI).parent), os.environ.get("PATH", "")]),
            }
        )
        env.update(FAST_SETTINGS_COMMON)
        if self.airflow_3:
            env.update(FAST_SETTINGS_V3)
            env.update(
                {
                    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                    "AIRFLOW__CORE__AUTH_MANAGER": (
                        "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                    ),
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                    "AIRFLOW__API__HOST": "127.0.0.1",
                    "AIRFLOW__API__PORT": str(self.api_port),
                    "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.api_port}",
                    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
                    # All services must sign and check the same task tokens.
                    "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                    "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
                }
            )
        else:
            env.update(FAST_SETTINGS_V2)
            env.update(
                {
                    "AIRFLOW__CORE__EXECUTOR": "SequentialExecutor",
                    "AIRFLOW__WEBSERVER__SECRET_KEY": secrets.token_hex(16),
                }
            )
        env.update(self.extra_env)
        return env

    def cli(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``airflow <args>`` with the deployment's environment; bounded by ``timeout``."""
        result = subprocess.run(
            [AIRFLOW_CLI, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.home,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"`airflow {' '.join(args)}` exited {result.returncode}\n"
                f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
            )
        return result

    def migrate(self) -> None:
        """Create the metadata database."""
        self.cli("db", "migrate", timeout=240)

    def start(self, *names: str) -> None:
        """Start services by CLI name (``scheduler``, ``triggerer``, ``dag-processor``, ``api-server``)."""
        for name in names:
            # No log-server ports: task logs are read from files here, and parallel runs never clash.
            extra = ["--skip-serve-logs"] if name in ("scheduler", "triggerer") else []
            self.start_cli_job(name, [name, *extra])

    def start_cli_job(self, name: str, args: list[str]) -> None:
        """Start ``airflow <args>`` in the background like a service (stopped with the services)."""
        log_path = self.service_logs_dir / f"{name}.log"
        proc = start_logged([AIRFLOW_CLI, *args], log_path, env=self.env, cwd=self.home)
        self.services.append(Service(name, proc, log_path))

    def default_services(self) -> tuple[str, ...]:
        """What ``airflow standalone`` runs on this Airflow line (without the UI on 2.x)."""
        if self.airflow_3:
            return ("api-server", "dag-processor", "scheduler", "triggerer")
        return ("scheduler", "triggerer")

    def check_alive(self, ignore: tuple[str, ...] = ()) -> None:
        """Raise if a service has exited (a dead scheduler would otherwise only show up as a timeout)."""
        for service in self.services:
            if service.name in ignore:
                continue
            code = service.proc.poll()
            if code is not None:
                raise RuntimeError(f"airflow {service.name} exited with code {code}")

    def wait_api_ready(self, timeout: float = 90) -> None:
        """Wait until the API server answers its health endpoint (Airflow 3 only)."""
        if not self.airflow_3:
            return
        url = f"http://127.0.0.1:{self.api_port}/api/v2/monitor/health"

        def probe() -> bool:
            self.check_alive()
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)

        wait_for("the API server's health endpoint", probe, timeout)

    # -- metadata DB (read-only, straight SQL: no Airflow ORM in the test process) --------------
    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query on the metadata DB; [] while the DB or the table does not exist.

        ``?`` placeholders, on either database (PostgreSQL's ``%s`` are put in here).
        """
        if self.postgres is not None:
            import psycopg2.errors

            try:
                return self.postgres.query(sql.replace("?", "%s"), params)
            except psycopg2.errors.UndefinedTable:
                return []
        if not self.db_path.exists():
            return []
        try:
            with contextlib.closing(
                sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
            ) as conn:
                return list(conn.execute(sql, params).fetchall())
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc) or "locked" in str(exc):
                return []
            raise

    # -- tear-down --------------------------------------------------------------------------------
    def stop(self, grace: float = 15) -> None:
        """Terminate every service's process group, then kill whatever is left; bounded by ``grace``."""
        import psutil

        descendants: list[psutil.Process] = []
        for service in self.services:
            with contextlib.suppress(psutil.Error):
                descendants += psutil.Process(service.proc.pid).children(recursive=True)
        for service in self.services:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(service.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for service in self.services:
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for service in self.services:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(service.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.proc.wait(timeout=5)
        # Anything that left the group (a task runner that called setsid) goes too.
        for proc in descendants:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(descendants, timeout=5)

    def log_tails(self, lines: int = 60) -> str:
        """The last lines of each service's output and of each task log, for a failure report."""
        parts: list[str] = []
        paths = [s.log_path for s in self.services]
        if self.logs_dir.exists():
            paths += sorted(p for p in self.logs_dir.rglob("*") if p.is_file())
        for path in paths:
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()
                parts.append(f"----- {path} (last {lines} lines) -----")
                parts.extend(text[-lines:])
        return "\n".join(parts)

    def task_logs(self) -> dict[Path, str]:
        """Every task (and trigger) log file under the deployment's log folder."""
        if not self.logs_dir.exists():
            return {}
        return {
            p: p.read_text(errors="replace")
            for p in sorted(self.logs_dir.rglob("*"))
            if p.is_file() and "dag_id=" in str(p)
        }


@contextlib.contextmanager
def running_deployment(
    home: Path, dags_folder: Path, extra_env: Mapping[str, str], *, report: Callable[[str], None] = print
) -> Iterator[AirflowDeployment]:
    """A migrated deployment with its services started; always stopped, logs printed on failure."""
    deployment = AirflowDeployment(home=home, dags_folder=dags_folder, extra_env=dict(extra_env))
    try:
        deployment.migrate()
        services = deployment.default_services()
        # The API server first: on a slow machine it takes several seconds to come up, and a task
        # the scheduler starts before it answers fails its first try on an Execution API timeout.
        first = tuple(s for s in services if s == "api-server")
        deployment.start(*first)
        deployment.wait_api_ready()
        deployment.start(*(s for s in services if s not in first))
        yield deployment
    except BaseException:
        report(deployment.log_tails())
        raise
    finally:
        deployment.stop()
