"""Chaos suite fixtures: the measured numbers of every scenario, printed at the end."""

from __future__ import annotations

import pytest

from tests.chaos.harness import MEASUREMENTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not MEASUREMENTS:
        return
    terminalreporter.section("chaos measurements")
    for scenario, numbers in MEASUREMENTS:
        values = ", ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in numbers.items()
        )
        terminalreporter.write_line(f"{scenario}: {values}")
