"""``make demo``: run the backfill example DAG for one day against the local emulator, end to end.

Starts the Flow Service emulator in this process, prepares an isolated Airflow home under
``.demo/`` (sqlite, DAGs folder = example_dags/, connection from the environment), runs
``airflow dags test example_flow_service_backfill <date>`` in a subprocess, then prints what
Airflow sent and how the run ended. Nothing here touches ~/airflow or the network beyond 127.0.0.1.
Exits non-zero, saying why, if any step fails.

With ``FLOWSERVICE_DEMO_INSTALLED=1`` (``make test-wheel``) it runs the example DAG shipped in the
installed distribution (``airflow_provider_flowservice.example_dags``) with the installed package,
and refuses to run if that package is this checkout's source tree.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO / ".demo"
DAG_ID = "example_flow_service_backfill"
TASK_ID = "ingest_interval"
#: A midnight: on Airflow 2.11 and 3.x, ``dags test`` gives it the one daily interval that ends
#: there (2025-01-01 00:00 -> 2025-01-02 00:00 UTC). What was actually sent is printed anyway.
LOGICAL_DATE = "2025-01-02T00:00:00+00:00"
MIGRATE_TIMEOUT = 300
DAGS_TEST_TIMEOUT = 240
TAIL_LINES = 25

INSTALLED = os.environ.get("FLOWSERVICE_DEMO_INSTALLED") == "1"
if INSTALLED:
    DEMO_DIR = REPO / ".demo" / "wheel"
else:
    sys.path.insert(0, str(REPO))  # a fresh clone without `pip install -e .` still finds the package

from airflow_provider_flowservice.models import FlowRun  # noqa: E402
from airflow_provider_flowservice.testing.emulator import (  # noqa: E402
    DEFAULT_FLOW_ID,
    FlowServiceEmulator,
)


class DemoError(Exception):
    """A step failed; the message says which and where to look."""


def _airflow_cli() -> Path:
    cli = Path(sys.executable).with_name("airflow")
    if not cli.exists():
        raise DemoError(
            f"No `airflow` command next to {sys.executable}. Install the project first: `make install` "
            "(or run this script with the Python of a virtualenv that has Airflow)."
        )
    return cli


def _airflow_version() -> str:
    """The installed Airflow's version, without importing Airflow (this process stays light)."""
    try:
        return metadata.version("apache-airflow")
    except metadata.PackageNotFoundError as exc:
        raise DemoError("apache-airflow is not installed for this Python: run `make install` first.") from exc


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines()[-lines:])


def _dags_folder() -> Path:
    if not INSTALLED:
        return REPO / "example_dags"
    from airflow_provider_flowservice.example_dags import FOLDER

    import airflow_provider_flowservice

    package = Path(airflow_provider_flowservice.__file__).resolve()
    if package.parent == REPO / "airflow_provider_flowservice" or FOLDER == REPO / "example_dags":
        raise DemoError(f"FLOWSERVICE_DEMO_INSTALLED=1 but the package comes from the checkout: {package}")
    print(f"Installed package {package.parent}; example DAGs from {FOLDER}")
    return FOLDER


def _environment(emulator: FlowServiceEmulator, home: Path) -> dict[str, str]:
    """A clean Airflow environment: inherited AIRFLOW* settings dropped (they could point elsewhere)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k != "PYTHONPATH"}
    repo_path = [] if INSTALLED else [str(REPO)]
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(_dags_folder()),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_FLOW_SERVICE_DEFAULT": emulator.connection_json(),
            "FLOW_SERVICE_FLOW_ID": DEFAULT_FLOW_ID,
            "FLOW_SERVICE_POLL_INTERVAL": "1",
            "PYTHONPATH": os.pathsep.join([*repo_path, os.environ.get("PYTHONPATH", "")]).strip(os.pathsep),
            "PYTHONWARNINGS": "ignore",
        }
    )
    return env


def _run_logged(cmd: list[str], env: dict[str, str], log: Path, timeout: int, what: str) -> None:
    """Run ``cmd`` with its output in ``log``; raise DemoError (with the log's tail) if it fails."""
    with log.open("w") as out:
        try:
            proc = subprocess.run(  # noqa: S603 - our own fixed command line
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=timeout, check=False,
                cwd=log.parent if INSTALLED else REPO,
            )
        except subprocess.TimeoutExpired as exc:
            raise DemoError(f"{what} did not finish within {timeout} s. Full log: {log}") from exc
    if proc.returncode != 0:
        raise DemoError(
            f"{what} failed (exit {proc.returncode}). Last lines of {log}:\n{_tail(log.read_text())}"
        )


def _utc(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat()


def _report(emulator: FlowServiceEmulator, version: str, log: Path, seconds: float) -> None:
    creates = [r for r in emulator.requests if r.method == "POST" and r.path.endswith("/runs")]
    runs = emulator.runs_for_flow(DEFAULT_FLOW_ID)
    if len(creates) != 1 or len(runs) != 1:
        raise DemoError(
            f"Expected exactly one flow run to be created, the emulator saw {len(creates)} create "
            f"request(s) and holds {len(runs)} run(s). Full log: {log}"
        )
    params: dict[str, Any] = creates[0].body.get("params") or {}
    run = FlowRun.from_api(runs[0])
    start, end = int(params["windowStartTime"]), int(params["windowEndTime"])
    polls = sum(1 for r in emulator.requests if r.method == "GET" and r.path.endswith(f"/runs/{run.id}"))
    records = run.record_summary
    delta = (params.get("deltaColumn") or {}).get("name")
    rel_log = log.relative_to(REPO)
    print(
        "\n".join(
            [
                "",
                f"Flow Service demo: run {run.raw_status!r} (Airflow {version}, {seconds:.0f} s)",
                f"  DAG run       {DAG_ID}, `airflow dags test` logical date {LOGICAL_DATE}",
                f"  flow id       {run.flow_id}",
                f"  window (UTC)  {_utc(start)} -> {_utc(end)}",
                f"  window (unix) {start} -> {end}  ({end - start} s = {(end - start) / 3600:g} h)",
                f"  deltaColumn   {delta!r}",
                f"  run id        {run.id}",
                f"  final status  {run.raw_status}",
                f"  records       input {records.get('inputRecordCount')}, output "
                f"{records.get('outputRecordCount')}, failed {records.get('failedRecordCount')}",
                f"  requests      1 create, {polls} status poll(s), "
                f"{emulator.token_requests} token request(s)",
                f"  full log      {rel_log}",
                "",
            ]
        )
    )
    if not run.status.is_terminal or run.raw_status != "success":
        raise DemoError(f"The flow run ended {run.raw_status!r}, not 'success'. Full log: {log}")


def main() -> int:
    started = time.monotonic()
    try:
        cli = _airflow_cli()
        with FlowServiceEmulator(seconds_to_finish=2.0) as emulator:
            emulator.add_flow(DEFAULT_FLOW_ID, kind="table", name="Demo table-based flow")
            version = _airflow_version()
            home = DEMO_DIR / f"airflow-{version}"
            logs = DEMO_DIR / "logs"
            home.mkdir(parents=True, exist_ok=True)
            logs.mkdir(parents=True, exist_ok=True)
            env = _environment(emulator, home)
            print(f"Flow Service emulator on {emulator.url} (flow {DEFAULT_FLOW_ID}); Airflow {version}")
            print(f"Airflow home {home.relative_to(REPO)}: migrating the metadata database ...")
            _run_logged(
                [str(cli), "db", "migrate"], env, logs / f"db-migrate-{version}.log", MIGRATE_TIMEOUT,
                "`airflow db migrate`",
            )
            log = logs / f"dags-test-{version}.log"
            print(f"Running `airflow dags test {DAG_ID} {LOGICAL_DATE}` (log: {log.relative_to(REPO)}) ...")
            _run_logged(
                [str(cli), "dags", "test", DAG_ID, LOGICAL_DATE], env, log, DAGS_TEST_TIMEOUT,
                f"`airflow dags test {DAG_ID}`",
            )
            _report(emulator, version, log, time.monotonic() - started)
    except DemoError as exc:
        print(f"\nmake demo FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nmake demo interrupted.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
