"""The chaos tests' figures, printed once at the end of the test run so they can be quoted."""

from __future__ import annotations

from typing import Any

import pytest

_FIGURES = pytest.StashKey[list[str]]()


@pytest.fixture
def chaos_figures(request: pytest.FixtureRequest) -> list[str]:
    """Lines a chaos test adds once its checks pass; printed in the run's terminal summary."""
    return request.config.stash.setdefault(_FIGURES, [])


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    lines = config.stash.get(_FIGURES, [])
    if lines:
        terminalreporter.section("chaos figures")
        for line in lines:
            terminalreporter.write_line(line)
