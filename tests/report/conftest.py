"""Report tests: a small engine-made run (with failed generations) and a big handmade one.

Both are made before any browser starts (Playwright's sync API runs an event loop).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from report_helpers import engine_run, synthetic_run, write_prompts


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of 6 prompts x budget 6 against the fake server; 3 generations fail."""
    base = tmp_path_factory.mktemp("report-run")
    return engine_run(base / "run", write_prompts(base / "prompts.jsonl", 5), budget=6)


@pytest.fixture(scope="session")
def big_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """2,000 prompts x 16 responses of 300 characters, written by hand; and its text's size."""
    base = tmp_path_factory.mktemp("big-run")
    chars = synthetic_run(base / "big", prompts=2000, nodes=16, text_chars=300)
    return base / "big", chars
