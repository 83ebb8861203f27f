"""The resume check on manifests: what may change between runs of one directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from toa.config import parse_config
from toa.errors import ConfigError
from toa.store.manifest import build_manifest, check_resumable


def manifest(**strategy: Any) -> dict[str, Any]:
    settings = parse_config(
        {
            "agents": [{"name": "a", "base_url": "http://127.0.0.1:1/v1", "model": "m"}],
            "reward": {"type": "simulated"},
            "strategy": {"name": "toa", "budget": 8, **strategy},
        }
    )
    return build_manifest(settings, input_path=Path("in.jsonl"), prompt_field=None)


def test_same_settings_resume() -> None:
    check_resumable(manifest(), manifest())


def test_a_run_of_another_format_is_refused() -> None:
    old = {**manifest(), "format": 1}
    with pytest.raises(ConfigError, match="run format 1"):
        check_resumable(old, manifest())


def test_a_changed_setting_is_named() -> None:
    with pytest.raises(ConfigError, match=r"strategy\.alpha: 0\.1 -> 0\.2"):
        check_resumable(manifest(alpha=0.1), manifest(alpha=0.2))
