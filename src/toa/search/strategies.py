"""Strategies by name: what a configuration file or the CLI asks for.

| name | class | settings |
|---|---|---|
| toa | `TOASearch` | `TOAConfig` fields |
| random | `RandomSampling` | `SingleAgentConfig` (agent) |
| prs | `PRSSearch` | `SingleAgentConfig` (agent) |
| ensemble | `ParallelEnsemble` | none |
| seq-refine | `SequentialRefine` | none |
| moa | `MixtureOfAgents` | `MoAConfig` fields |
"""

from __future__ import annotations

from typing import Any

from toa.errors import ConfigError
from toa.search.baselines import (
    ParallelEnsemble,
    PRSSearch,
    RandomSampling,
    SequentialRefine,
    SingleAgentConfig,
)
from toa.search.context import Strategy
from toa.search.moa import MixtureOfAgents, MoAConfig
from toa.search.templates import Templates
from toa.search.toa import TOAConfig, TOASearch

__all__ = ["STRATEGY_NAMES", "make_strategy", "strategy_names"]

STRATEGY_NAMES: tuple[str, ...] = ("toa", "random", "prs", "ensemble", "seq-refine", "moa")
"""Every strategy name `make_strategy` knows, TOA first."""


def strategy_names() -> tuple[str, ...]:
    """Every strategy name `make_strategy` knows, TOA first."""
    return STRATEGY_NAMES


def make_strategy(name: str, *, templates: Templates | None = None, **settings: Any) -> Strategy:
    """The strategy called `name`, configured with keyword `settings` (table above).

    Raises:
        ConfigError: unknown name, or a setting the strategy does not have.
    """
    try:
        return _build(name, templates, settings)
    except TypeError as err:  # an unknown keyword for the config dataclass
        raise ConfigError(f"strategy {name!r}: {err}") from err


def _build(name: str, templates: Templates | None, settings: dict[str, Any]) -> Strategy:
    if name == "toa":
        return TOASearch(TOAConfig(**settings), templates=templates)
    if name == "random":
        return RandomSampling(SingleAgentConfig(**settings), templates=templates)
    if name == "prs":
        return PRSSearch(SingleAgentConfig(**settings), templates=templates)
    if name == "moa":
        return MixtureOfAgents(MoAConfig(**settings), templates=templates)
    if name in ("ensemble", "seq-refine"):
        if settings:
            raise ConfigError(f"strategy {name!r} takes no settings, got {sorted(settings)}")
        if name == "ensemble":
            return ParallelEnsemble(templates=templates)
        return SequentialRefine(templates=templates)
    raise ConfigError(f"unknown strategy {name!r}; choose one of {list(STRATEGY_NAMES)}")
