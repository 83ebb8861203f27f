"""Export tests: Hugging Face libraries kept offline; one engine-made run directory shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before anything imports `datasets` or `huggingface_hub`: they read these once, at import.
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from export_helpers import engine_run, write_prompts


def pytest_configure(config: pytest.Config) -> None:
    # Until pyproject.toml's [tool.pytest.ini_options] markers lists it (--strict-markers).
    config.addinivalue_line("markers", "train: trains a tiny model with TRL (extra: train)")


@pytest.fixture(scope="session")
def engine_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of 6 prompts x budget 8 by the real engine against the fake server."""
    base = tmp_path_factory.mktemp("engine-run")
    prompts = write_prompts(base / "prompts.jsonl", 6)
    return engine_run(base / "run", prompts, budget=8)
