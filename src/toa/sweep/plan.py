"""What a sweep is made of: its cells (strategy x budget), its manifest, and the checks made
before any call (strategies, budgets, the single agent of random / prs, the rerun's arguments).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toa.errors import ConfigError
from toa.search.strategies import STRATEGY_NAMES
from toa.settings import RunSettings
from toa.store.manifest import setting_changes

__all__ = [
    "CACHE_NAME",
    "CALIBRATION_DIR",
    "CELLS_DIR",
    "INPUTS_DIR",
    "MANIFEST_VERSION",
    "SINGLE_AGENT_STRATEGIES",
    "SWEEP_MANIFEST",
    "Cell",
    "SweepPlan",
    "check_rerun",
    "file_sha256",
    "parse_budgets",
    "parse_strategies",
    "read_sweep_manifest",
    "resolve_single_agent",
]

SWEEP_MANIFEST = "sweep_manifest.json"
CACHE_NAME = "generations.sqlite"
CELLS_DIR = "cells"
CALIBRATION_DIR = "calibration"
INPUTS_DIR = "inputs"
MANIFEST_VERSION = 1
SINGLE_AGENT_STRATEGIES = ("random", "prs")
"""The strategies that run one agent (`strategy.agent`)."""


@dataclass(frozen=True, slots=True)
class Cell:
    """One (strategy, budget) of a sweep: a normal run directory, ``cells/<name>``."""

    strategy: str
    budget: int

    @property
    def name(self) -> str:
        return f"{self.strategy}-b{self.budget}"


def parse_strategies(text: str | Sequence[str]) -> tuple[str, ...]:
    """Strategy names from ``toa,ensemble,random`` (or a list); `ConfigError` for an empty list,
    an unknown or a repeated name (the known ones are listed)."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    if not names:
        raise ConfigError(
            f"--strategies: no strategy given; choose from {', '.join(STRATEGY_NAMES)}"
        )
    unknown = [n for n in names if n not in STRATEGY_NAMES]
    if unknown:
        raise ConfigError(
            f"--strategies: unknown strategy {', '.join(map(repr, unknown))}; "
            f"the known ones are {', '.join(STRATEGY_NAMES)}"
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"--strategies: {', '.join(repeated)} given twice")
    return tuple(names)


def parse_budgets(text: str | Sequence[int | str]) -> tuple[int, ...]:
    """Budgets from ``4,8,16`` (or a list), ascending; `ConfigError` for an empty list, a value
    that is not a whole number, a budget below 1 or a repeated one."""
    parts = [
        p.strip() if isinstance(p, str) else p
        for p in (text.split(",") if isinstance(text, str) else text)
    ]
    parts = [p for p in parts if p != ""]
    if not parts:
        raise ConfigError("--budgets: no budget given (e.g. --budgets 4,8,16)")
    budgets: list[int] = []
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, int | str):
            raise ConfigError(f"--budgets: {part!r} is not a whole number")
        try:
            value = int(part)
        except ValueError:
            raise ConfigError(f"--budgets: {part!r} is not a whole number") from None
        if value < 1:
            raise ConfigError(f"--budgets: {value} is not a budget (generations per prompt, >= 1)")
        budgets.append(value)
    repeated = sorted({b for b in budgets if budgets.count(b) > 1})
    if repeated:
        raise ConfigError(f"--budgets: {', '.join(map(str, repeated))} given twice")
    return tuple(sorted(budgets))


def resolve_single_agent(
    settings: RunSettings,
    strategies: Sequence[str],
    single_agent: str | None,
    *,
    calibration: int | None = None,
) -> str | None:
    """The agent random / prs cells use: `single_agent`, else the configuration's own
    `strategy.agent` (when its strategy is random or prs), else the only agent; None when no
    cell needs one. ``auto`` (returned as is) chooses it on a calibration slice of `calibration`
    prompts (see `toa.sweep.driver`). `ConfigError` when a cell needs one and none is known, for
    a name that is not an agent, or for ``auto`` and `calibration` without each other."""
    agents = [a.name for a in settings.agents]
    needing = [s for s in strategies if s in SINGLE_AGENT_STRATEGIES]
    if single_agent == "auto" or calibration is not None:
        if single_agent != "auto":
            raise ConfigError("--calibration N is used only with --single-agent auto")
        if calibration is None:
            raise ConfigError(
                "--single-agent auto needs --calibration N: the last N prompts of the input "
                "choose the agent (best mean reward of one answer each) and are left out of "
                "the sweep"
            )
        if not needing:
            raise ConfigError(
                "--single-agent auto: no cell runs a single agent (strategies random, prs)"
            )
        return "auto"
    if single_agent is not None:
        if single_agent not in agents:
            raise ConfigError(
                f"--single-agent: {single_agent!r} is not one of the agents {', '.join(agents)}"
            )
        return single_agent
    if not needing:
        return None
    own = settings.config_data.get("strategy", {})
    if own.get("name") in SINGLE_AGENT_STRATEGIES and own.get("agent"):
        return str(own["agent"])
    if len(agents) == 1:
        return agents[0]
    raise ConfigError(
        f"strategy {', '.join(needing)} runs a single agent: say which with --single-agent NAME "
        f"(one of {', '.join(agents)}), or --single-agent auto --calibration N to choose it on "
        "the last N prompts"
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class SweepPlan:
    """A sweep's arguments, checked: `cells` are in running order, cheapest first (budget
    ascending, then the order of `strategies`)."""

    sweep_dir: Path
    config_path: Path
    input_path: Path
    strategies: tuple[str, ...]
    budgets: tuple[int, ...]
    limit: int | None = None
    prompt_field: str | None = None
    single_agent: str | None = None
    calibration: int | None = None

    @property
    def cells(self) -> tuple[Cell, ...]:
        return tuple(Cell(s, b) for b in sorted(self.budgets) for s in self.strategies)

    @property
    def cache_path(self) -> Path:
        return (self.sweep_dir / CACHE_NAME).resolve()

    def cell_dir(self, cell: Cell) -> Path:
        return self.sweep_dir / CELLS_DIR / cell.name

    def manifest(self, generation: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """What `sweep_manifest.json` records (no clock: a rerun rewrites the same bytes).

        `generation`: the base settings' `toa.store.manifest.generation_settings`, which a rerun
        compares (so that an endpoint's address, a timeout or a price may change between runs,
        as for `toa resume`); without it the file's sha256 is compared."""
        config: dict[str, Any] = {
            "path": str(self.config_path.resolve()),
            "sha256": file_sha256(self.config_path),
        }
        if generation is not None:
            config["generation"] = dict(generation)
        return {
            "version": MANIFEST_VERSION,
            "config": config,
            "input": {
                "path": str(self.input_path.resolve()),
                "sha256": file_sha256(self.input_path),
            },
            "prompt_field": self.prompt_field,
            "limit": self.limit,
            "single_agent": self.single_agent,
            "calibration": self.calibration,
            "strategies": list(self.strategies),
            "budgets": list(self.budgets),
        }


def read_sweep_manifest(sweep_dir: Path) -> dict[str, Any] | None:
    """The sweep's manifest, or None when the directory holds none."""
    path = sweep_dir / SWEEP_MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a sweep manifest ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a sweep manifest (not a JSON object)")
    return data


def check_rerun(old: dict[str, Any], new: dict[str, Any], sweep_dir: Path) -> list[str]:
    """A rerun into an existing sweep: the same configuration, input, limit and single agent,
    and the same strategies and budgets or more (the names of the added cells are returned).
    `ConfigError` naming every difference otherwise."""
    problems = []
    old_gen, new_gen = old.get("config", {}).get("generation"), new["config"].get("generation")
    if old_gen is not None and new_gen is not None:
        changes = setting_changes(old_gen, new_gen)
        if changes:
            shown = "; ".join(changes[:10]) + (
                f"; ... {len(changes) - 10} more" if len(changes) > 10 else ""
            )
            problems.append(
                f"the configuration {new['config']['path']} changes what is generated or scored "
                f"({shown})"
            )
    for key, label in (("config", "configuration"), ("input", "input")):
        if key == "config" and old_gen is not None and new_gen is not None:
            continue
        if old.get(key, {}).get("sha256") != new[key]["sha256"]:
            problems.append(
                f"the {label} {new[key]['path']} is not the one the sweep was made with "
                f"({old.get(key, {}).get('path')}, another content)"
            )
    for key in ("prompt_field", "limit", "single_agent", "calibration"):
        if old.get(key) != new.get(key):
            problems.append(f"{key}: {old.get(key)!r} then, {new.get(key)!r} now")
    for key in ("strategies", "budgets"):
        dropped = [v for v in old.get(key, []) if v not in new[key]]
        if dropped:
            problems.append(
                f"{key}: {', '.join(map(str, dropped))} left out (a rerun may only add cells; "
                f"pass them too, or use another directory)"
            )
    if problems:
        raise ConfigError(
            f"{sweep_dir} holds a sweep made with other arguments:\n  - " + "\n  - ".join(problems)
        )
    before = {Cell(s, b).name for s in old.get("strategies", []) for b in old.get("budgets", [])}
    return [
        Cell(s, b).name
        for b in new["budgets"]
        for s in new["strategies"]
        if Cell(s, b).name not in before
    ]
