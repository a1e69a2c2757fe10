"""Browser tests: Airflow 3.x's own UI in Debian's Chromium, driven by Playwright, against the emulator.

One real deployment per session (``api-server``, ``dag-processor``, ``scheduler``, ``triggerer`` on
127.0.0.1, free ports; see ``tests/system/_airflow_services.py``) with both example DAGs, the
emulator in this process, and one Chromium with a fresh user-data dir. The metadata database is a
throw-away PostgreSQL server when this machine can start one (``tests/system/_postgres.py``: Airflow
3.3.2's Backfill dialog is refused on SQLite under concurrent writes), else SQLite, as ``airflow
standalone`` uses; ``FLOWSERVICE_TESTS_NO_POSTGRES=1`` forces SQLite. Each test that fails
saves a screenshot of its page to ``tests/ui/artifacts/<test>.png`` (named in the failure report).

Never ``playwright install``: the browser is ``/usr/bin/chromium`` (``apt-get install chromium``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
DOCS_IMG = REPO / "docs" / "img"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _why_skip() -> str | None:
    if not CHROMIUM.exists():
        return f"no {CHROMIUM}: install it with `apt-get install -y chromium`"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "no playwright: `pip install -e '.[test]'`"
    from airflow import __version__

    if int(__version__.split(".")[0]) < 3:
        return f"the browser tests drive Airflow 3.x's UI; this is Airflow {__version__}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _why_skip()
    for item in items:
        if "tests/ui/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.ui)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" and report.failed:
        page = getattr(item, "_ui_page", None)
        if page is not None:
            ARTIFACTS.mkdir(exist_ok=True)
            path = ARTIFACTS / f"{item.name}.png"
            try:
                page.screenshot(path=str(path), full_page=True)
                report.sections.append(("screenshot", str(path)))
            except Exception as exc:  # the page may be gone; the failure itself matters more
                report.sections.append(("screenshot", f"could not save: {exc}"))
    return report


# ------------------------------------------------------------------ the deployment and the browser
from airflow_provider_flowservice.testing.emulator import (  # noqa: E402
    DEFAULT_FLOW_ID,
    FlowServiceEmulator,
)
from tests.system._airflow_services import AirflowDeployment, wait_for  # noqa: E402
from tests.system._postgres import PostgresCluster, postgres_missing  # noqa: E402

EXAMPLE_DAGS = ("example_flow_service_backfill", "example_flow_service_manual")
#: Seconds an emulated flow run takes: long enough to see the task deferred in the UI.
SECONDS_TO_FINISH = 6.0
#: The API server can take minutes to answer on a loaded 2-core machine.
API_START_TIMEOUT = 300.0


def _as_the_form_saves_it(emulator: FlowServiceEmulator) -> str:
    """The example DAGs' connection as a user saves it in the form: every default the form shows
    (so its task logs show what a form-made connection logs), the emulator's org and IMS."""
    from airflow_provider_flowservice.get_provider_info import get_provider_info

    (conn_type,) = get_provider_info()["connection-types"]
    fields = conn_type["conn-fields"].items()
    defaults = {n: f["schema"]["default"] for n, f in fields if "default" in f["schema"]}
    conn = json.loads(emulator.connection_json())
    conn["extra"] = {**defaults, "org_id": emulator.org_id, "ims_url": emulator.ims_token_url}
    return json.dumps(conn)


@pytest.fixture(scope="session")
def emulator() -> Iterator[FlowServiceEmulator]:
    with FlowServiceEmulator(seconds_to_finish=SECONDS_TO_FINISH) as emu:
        emu.add_flow(DEFAULT_FLOW_ID, kind="table")
        yield emu


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster | None]:
    """A throw-away PostgreSQL server (stopped by its PID at the end), or None where none can start."""
    if postgres_missing():
        yield None
        return
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def airflow(
    emulator: FlowServiceEmulator, postgres: PostgresCluster | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowDeployment]:
    """Airflow 3.x as ``airflow standalone`` runs it, with both example DAGs as shipped; its metadata
    database on PostgreSQL when there is one, else SQLite. Its services are stopped by PID."""
    root = tmp_path_factory.mktemp("ui-airflow")
    dags = root / "dags"
    dags.mkdir()
    for dag_id in EXAMPLE_DAGS:
        shutil.copy(REPO / "example_dags" / f"{dag_id}.py", dags)
    home = root / "home"
    home.mkdir()
    env = {
        "AIRFLOW_CONN_FLOW_SERVICE_DEFAULT": _as_the_form_saves_it(emulator),
        "FLOW_SERVICE_POLL_INTERVAL": "1",
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
    }
    deployment = AirflowDeployment(home=home, dags_folder=dags, extra_env=env, postgres=postgres)
    try:
        deployment.migrate()
        # The API server first (tasks need its Execution API), given time to start on a busy machine.
        deployment.start("api-server")
        deployment.wait_api_ready(timeout=API_START_TIMEOUT)
        deployment.start("dag-processor", "scheduler", "triggerer")
        wait_for(
            "the dag-processor to store both example DAGs",
            lambda: len(deployment.query("SELECT dag_id FROM dag WHERE NOT is_stale")) >= len(EXAMPLE_DAGS),
            180,
        )
        yield deployment
    except BaseException:
        print(deployment.log_tails())
        raise
    finally:
        deployment.stop()


@pytest.fixture(scope="session")
def base_url(airflow: AirflowDeployment) -> str:
    return f"http://127.0.0.1:{airflow.api_port}"


@pytest.fixture(scope="session")
def browser_context() -> Iterator[Any]:
    """Debian's Chromium with the issue's flags and a fresh user-data dir (removed afterwards)."""
    from playwright.sync_api import sync_playwright

    user_data = tempfile.mkdtemp(prefix="flowservice-ui-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                user_data,
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport={"width": 1440, "height": 900},
            )
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(user_data, ignore_errors=True)


@pytest.fixture
def page(request: pytest.FixtureRequest, browser_context: Any, base_url: str) -> Iterator[Any]:
    """A new tab (screenshotted by ``pytest_runtest_makereport`` if the test fails)."""
    tab = browser_context.new_page()
    tab.set_default_timeout(90_000)  # a loaded 2-core machine renders slowly
    request.node._ui_page = tab
    try:
        yield tab
    finally:
        tab.close()
