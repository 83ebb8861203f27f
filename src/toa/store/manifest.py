"""The run manifest: what a run directory was made with, and whether a resume may continue it.

``manifest.json`` holds the configuration (env-var names only: keys never reach a file), its hash,
the template hashes, package versions, the seed, the input and the start time. The input is its
resolved path, the prompt field, the sha256 and size of its bytes and its number of good prompts
(manifests of older releases have the path and prompt field only); the runner checks a continued
run's input against it (`toa.engine.input_identity`). A resume compares
the settings that change what is generated or how it is scored; a difference refuses the resume
with a message naming each changed field. Settings that only change how calls are made (URLs,
concurrency, timeouts, retries, prices) may change between runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from toa import __version__
from toa.errors import ConfigError, StoreError
from toa.settings import RunSettings
from toa.store.layout import MANIFEST_NAME

__all__ = [
    "MANIFEST_NAME",
    "build_manifest",
    "check_resumable",
    "generation_config",
    "generation_settings",
    "read_manifest",
    "setting_changes",
    "write_manifest",
]

# 2: per-request seeds follow (request, sample index), not the tree position. Runs of another
# format would send every stored call again on resume, so they are refused.
_FORMAT = 2

# Agent fields that do not change what a call generates: free to change on resume.
_AGENT_OPERATIONAL = frozenset(
    {
        "base_url",
        "api_key_env",
        "max_concurrency",
        "requests_per_minute",
        "timeout_s",
        "retry",
        "breaker",
        "price",
        "params_b",
    }
)


def _versions() -> dict[str, str]:
    from importlib import metadata  # about 20 ms: only when a manifest is written

    versions = {"toa": __version__, "python": platform.python_version()}
    for package in ("aiohttp", "httptools", "orjson", "pydantic", "pyyaml"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def build_manifest(
    settings: RunSettings, *, input_path: Path, prompt_field: str | None
) -> dict[str, Any]:
    """The manifest of a new run."""
    return {
        "format": _FORMAT,
        "config": settings.config_dict(),
        "config_hash": settings.config_hash(),
        "config_source": settings.source,
        "template_hashes": settings.templates.hashes(),
        "strategy": settings.strategy_name,
        "budget": settings.budget,
        "seed": settings.seed,
        "input": {"path": str(input_path.resolve()), "prompt_field": prompt_field},
        "versions": _versions(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(),
    }


def write_manifest(run_dir: Path, manifest: Mapping[str, Any]) -> None:
    """Write atomically (temp file + rename), so a crash never leaves half a manifest."""
    path = run_dir / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StoreError(
            f"{path}: cannot write the run's manifest ({exc.strerror or exc}); nothing was "
            "sent. Free space or fix permissions, then run the same command again"
        ) from exc


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The manifest of an existing run directory.

    Raises:
        ConfigError: no manifest, or not readable JSON.
    """
    path = run_dir / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{run_dir}: no {MANIFEST_NAME}: not a TOA run directory (start one with `toa run`)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable manifest ({exc})") from exc
    if not isinstance(data, dict) or "config" not in data:
        raise ConfigError(f"{path}: not a TOA manifest")
    return data


def check_resumable(old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    """Refuse to continue a run whose generation-relevant settings changed.

    Raises:
        ConfigError: naming every changed field, old and new values, and what to do.
    """
    if old.get("format") != new.get("format"):
        raise ConfigError(
            f"this run directory was written by a TOA with run format {old.get('format')!r} "
            f"(this one writes {new.get('format')!r}); its stored calls cannot be matched, so "
            "resuming would pay for them again. Start a new run directory."
        )
    changes = list(_diff(_relevant(old), _relevant(new), ""))
    if not changes:
        return
    listed = "\n".join(f"  {path}: {a!r} -> {b!r}" for path, a, b in changes[:20])
    more = f"\n  ... and {len(changes) - 20} more" if len(changes) > 20 else ""
    raise ConfigError(
        "the configuration changed in ways that change what is generated or scored, so this run "
        f"cannot be continued with it:\n{listed}{more}\n"
        "Use the original configuration (`toa resume RUN_DIR` reads it from manifest.json), or "
        "start a new run directory."
    )


def generation_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """`generation_settings` of a configuration's JSON form (`RunSettings.config_dict()`, a
    manifest's ``config``), without the templates' hashes."""
    relevant = _relevant({"config": config})
    relevant.pop("template_hashes", None)
    return relevant


def generation_settings(settings: RunSettings) -> dict[str, Any]:
    """What decides what `settings` generate and score, as a resume compares it: the
    configuration without its runner and eval sections and the agents' operational fields
    (where calls are sent, limits, prices), with the templates' hashes."""
    return _relevant(
        {"config": settings.config_dict(), "template_hashes": settings.templates.hashes()}
    )


def setting_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The differences of two `generation_settings`, one ``path: old -> new`` line each."""
    return [f"{path}: {a!r} -> {b!r}" for path, a, b in _diff(dict(old), dict(new), "")]


def _relevant(manifest: Mapping[str, Any]) -> dict[str, Any]:
    config = dict(manifest.get("config", {}))
    config.pop("runner", None)
    config.pop("serve", None)  # `toa serve`'s limits: nothing generated depends on them
    config.pop("eval", None)  # judges the answers afterwards: changes nothing generated
    config["agents"] = [
        {k: v for k, v in agent.items() if k not in _AGENT_OPERATIONAL}
        for agent in config.get("agents", [])
    ]
    config["template_hashes"] = manifest.get("template_hashes")
    return config


def _diff(a: Any, b: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            yield from _diff(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _diff(x, y, f"{path}[{i}]")
    elif a != b:
        yield path, a, b
