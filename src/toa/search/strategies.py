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

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from toa.errors import ConfigError
from toa.search import names
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

__all__ = ["STRATEGIES", "STRATEGY_NAMES", "make_strategy", "strategy_names"]


@dataclass(frozen=True, slots=True)
class _Kind:
    """A strategy by name: its class and its settings dataclass (None: it takes none)."""

    cls: Callable[..., Strategy]
    config: Callable[..., Any] | None


STRATEGIES: Mapping[str, _Kind] = MappingProxyType(
    {
        "toa": _Kind(TOASearch, TOAConfig),
        "random": _Kind(RandomSampling, SingleAgentConfig),
        "prs": _Kind(PRSSearch, SingleAgentConfig),
        "ensemble": _Kind(ParallelEnsemble, None),
        "seq-refine": _Kind(SequentialRefine, None),
        "moa": _Kind(MixtureOfAgents, MoAConfig),
    }
)
"""Every strategy `make_strategy` knows, TOA first: the one list of strategy names."""

STRATEGY_NAMES: tuple[str, ...] = names.STRATEGY_NAMES
"""Every strategy name `make_strategy` knows, TOA first (`toa.search.names`, which the command
line reads without loading the strategies)."""

if tuple(STRATEGIES) != STRATEGY_NAMES:  # pragma: no cover - a registry edit that forgot names.py
    raise RuntimeError(
        f"toa.search.names.STRATEGY_NAMES {STRATEGY_NAMES} differs from the registry "
        f"{tuple(STRATEGIES)}; keep the two in step"
    )


def strategy_names() -> tuple[str, ...]:
    """Every strategy name `make_strategy` knows, TOA first."""
    return STRATEGY_NAMES


def make_strategy(name: str, *, templates: Templates | None = None, **settings: Any) -> Strategy:
    """The strategy called `name`, configured with keyword `settings` (table above).

    Raises:
        ConfigError: unknown name, or a setting the strategy does not have.
    """
    kind = STRATEGIES.get(name)
    if kind is None:
        raise ConfigError(f"unknown strategy {name!r}; choose one of {list(STRATEGY_NAMES)}")
    if kind.config is None:
        if settings:
            raise ConfigError(f"strategy {name!r} takes no settings, got {sorted(settings)}")
        return kind.cls(templates=templates)
    try:
        config = kind.config(**settings)
    except TypeError as err:  # an unknown keyword for the config dataclass
        raise ConfigError(f"strategy {name!r}: {err}") from err
    return kind.cls(config, templates=templates)
