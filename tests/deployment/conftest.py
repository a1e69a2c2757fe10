"""Without PostgreSQL or Redis the deployment test is skipped, with ONE line saying how to install them
(or, when ``FLOWSERVICE_TESTS_NO_POSTGRES=1`` turned PostgreSQL off, what to unset)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.deployment._cluster import why_skipped


def pytest_terminal_summary(terminalreporter: Any) -> None:
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if "tests/deployment/" in str(getattr(report, "nodeid", ""))
    ]
    reason = why_skipped()
    if skipped and reason:
        terminalreporter.write_line(f"SKIPPED the deployment test (tests/deployment/): {reason}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the item, so a fixture can print the services' logs on failure."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
