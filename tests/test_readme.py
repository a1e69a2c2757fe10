"""The README's promises, checked: its hook script runs, its links work on PyPI, CI calls its test
command; and the testing page's pytest example runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _python_block_after(heading: str) -> str:
    section = README.split(heading, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python block after {heading!r}"
    return match.group(1)


def test_readme_hook_script_creates_a_run_and_reads_it_to_success() -> None:
    script = _python_block_after("## The hook, in a script")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    result = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Airflow 3 logs to stdout too; keep the script's own lines.
    created = [line for line in result.stdout.splitlines() if line.startswith("created ")]
    assert len(created) == 1, result.stdout
    run_id = created[0].split()[1]
    statuses = [line.split()[1] for line in result.stdout.splitlines() if line.startswith(f"{run_id} ")]
    assert statuses[-1] == "success"
    assert statuses[0] != "success"  # it really read the run until it ended


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M), ci


def test_readme_links_are_absolute_so_they_work_on_pypi() -> None:
    targets = re.findall(r"\]\(([^)]+)\)", README)
    assert targets, "the README links to the docs"
    relative = [t for t in targets if not t.startswith("https://")]
    assert not relative, relative


def test_testing_page_pytest_plugin_example_runs(tmp_path: Path) -> None:
    """The docs' pytest plugin example (conftest + test), run as a user's own test suite."""
    page = (ROOT / "docs" / "testing-your-dags.md").read_text()
    section = page.split("## The pytest plugin", 1)[1].split("\n## ", 1)[0]
    conftest, test = re.findall(r"```python\n(.*?)```", section, re.S)
    (tmp_path / "conftest.py").write_text(conftest)
    (tmp_path / "test_mine.py").write_text(test)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout
