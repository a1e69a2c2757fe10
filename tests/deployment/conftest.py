"""Without PostgreSQL or Redis the deployment test is skipped, with ONE line saying how to install them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.deployment._cluster import INSTALL_HINT, missing_binaries


def pytest_terminal_summary(terminalreporter: Any) -> None:
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if "tests/deployment/" in str(getattr(report, "nodeid", ""))
    ]
    missing = missing_binaries()
    if skipped and missing:
        terminalreporter.write_line(
            f"SKIPPED the deployment test (tests/deployment/): needs {', '.join(missing)}; "
            f"install them with: {INSTALL_HINT}"
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the item, so a fixture can print the services' logs on failure."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
