"""Shows the unit's systemd-analyze security score at the end of every test run."""

from __future__ import annotations

import pytest

_REPORT = pytest.StashKey[list[str]]()


@pytest.fixture
def unit_report(request: pytest.FixtureRequest) -> list[str]:
    """Lines a test adds here appear in the terminal summary (pytest hides passing output)."""
    return request.config.stash.setdefault(_REPORT, [])


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    lines = config.stash.get(_REPORT, [])
    if lines:
        terminalreporter.write_sep("-", "systemd unit")
        for line in lines:
            terminalreporter.write_line(line)
