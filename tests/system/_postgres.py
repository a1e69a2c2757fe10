"""A throw-away PostgreSQL server on 127.0.0.1 for tests that need a real metadata database.

``initdb`` in a temp dir owned by the ``postgres`` user (the server refuses to run as root), then
``postgres`` in the foreground as that user on a free port, in its own process group, stopped by its
PID. Used by the deployment test (CeleryExecutor) and the browser tests (the Backfill dialog, which
Airflow 3.3.2 refuses on SQLite under concurrent writes).

``postgres_missing()`` says why a test cannot have one (Debian's ``postgresql`` package, the
``postgres`` user, root to switch to it, psycopg2); ``FLOWSERVICE_TESTS_NO_POSTGRES=1`` makes it
report PostgreSQL missing, so the SQLite paths can be run on a machine that has it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tests.system._airflow_services import BackgroundServer, free_port, start_logged, wait_for

PG_BINARIES = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
INSTALL_HINT = "apt-get update && apt-get install -y postgresql"
NO_POSTGRES_ENV = "FLOWSERVICE_TESTS_NO_POSTGRES"


def postgres_missing() -> str | None:
    """Why no throw-away PostgreSQL server can be started here; None when one can."""
    if os.environ.get(NO_POSTGRES_ENV) == "1":
        return f"{NO_POSTGRES_ENV}=1"
    if not PG_BINARIES:
        return f"no PostgreSQL (/usr/lib/postgresql/*/bin/postgres): {INSTALL_HINT}"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return f"no `postgres` user (Debian's postgresql package makes it): {INSTALL_HINT}"
    if os.geteuid() != 0:
        return "not root: the server is started as the `postgres` user, which needs root"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "no psycopg2: `pip install -e '.[test]'`"
    return None


def stop_group(proc: subprocess.Popen[bytes], sig: signal.Signals, grace: float = 15) -> None:
    """Signal a process group, wait up to ``grace`` s, then SIGKILL what is left of it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


class PostgresCluster(BackgroundServer):
    """``initdb`` + ``postgres`` as the ``postgres`` user in a fresh temp dir; trust auth on 127.0.0.1."""

    def __init__(self) -> None:
        self.bin = PG_BINARIES[-1].parent
        self.user = pwd.getpwnam("postgres")
        self.root = Path(tempfile.mkdtemp(prefix="flowservice-pg-"))
        os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self.data = self.root / "data"
        self.port = free_port()
        self.log_path = self.root / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _as_postgres(self) -> dict[str, Any]:
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": [], "cwd": self.root}

    def start(self) -> None:
        subprocess.run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "airflow",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=120,
            **self._as_postgres(),
        )
        self.log_path.touch()
        os.chown(self.log_path, self.user.pw_uid, self.user.pw_gid)
        self.proc = start_logged(
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.root}",
                "-c",
                "max_connections=400",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            self.log_path,
            **self._as_postgres(),
        )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log_path.read_text()[-2000:]}")
            return (
                subprocess.run(
                    [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                    capture_output=True,
                    timeout=10,
                    check=False,
                ).returncode
                == 0
            )

        wait_for("PostgreSQL to accept connections", ready, 60)
        subprocess.run(
            [str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "airflow", "airflow"],
            check=True,
            capture_output=True,
            timeout=60,
        )

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg2://airflow@127.0.0.1:{self.port}/airflow"

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one query (``%s`` placeholders), on a fresh autocommit connection."""
        import psycopg2

        with contextlib.closing(
            psycopg2.connect(
                host="127.0.0.1", port=self.port, user="airflow", dbname="airflow", connect_timeout=10
            )
        ) as conn:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall())

    def stop(self) -> None:
        """Stop the server by its PID (SIGINT: PostgreSQL's "fast" shutdown), then remove its files."""
        if self.proc is not None:
            stop_group(self.proc, signal.SIGINT)
        shutil.rmtree(self.root, ignore_errors=True)
