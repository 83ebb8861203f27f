"""The public surface of toa.search: exports, protocols, and strategies by name."""

from __future__ import annotations

import pytest

import toa.search
from toa.errors import ConfigError
from toa.search import (
    MixtureOfAgents,
    SearchContext,
    Strategy,
    TOASearch,
    make_strategy,
    strategy_names,
)
from toa.testing.sim_context import SimulatedContext
from toa.testing.world import World


def test_all_is_sorted_unique_and_resolves() -> None:
    exported = list(toa.search.__all__)
    assert exported == sorted(exported)
    assert len(set(exported)) == len(exported)
    for name in exported:
        assert hasattr(toa.search, name), name


def test_documented_names_are_exported() -> None:
    for name in (
        "SearchContext", "SearchTree", "Strategy", "TOAConfig", "TOASearch", "RandomSampling",
        "PRSSearch", "ParallelEnsemble", "SequentialRefine", "MixtureOfAgents", "Templates",
        "Normalisation", "normalise_by_rank", "normalise_by_min_max", "normalise_by_sigmoid",
        "select_by_ucb", "ucb_score", "is_fully_expanded", "paper_preset", "make_strategy",
    ):  # fmt: skip
        assert name in toa.search.__all__, name


def test_the_simulated_context_is_a_search_context() -> None:
    assert isinstance(SimulatedContext(World.named("helps")), SearchContext)


@pytest.mark.parametrize("name", strategy_names())
def test_every_named_strategy_is_a_strategy(name: str) -> None:
    strategy = make_strategy(name)
    assert isinstance(strategy, Strategy)
    assert strategy.name == name
    assert repr(strategy).startswith(type(strategy).__name__ + "(")


def test_make_strategy_passes_settings_and_rejects_unknown_ones() -> None:
    toa_search = make_strategy("toa", alpha=0.5, parallel_plays=2)
    assert isinstance(toa_search, TOASearch)
    assert toa_search.config.alpha == 0.5
    moa = make_strategy("moa", layers=3)
    assert isinstance(moa, MixtureOfAgents)
    assert moa.config.layers == 3
    with pytest.raises(ConfigError, match="strategy 'toa'"):
        make_strategy("toa", beta=1.0)
    with pytest.raises(ConfigError, match="takes no settings"):
        make_strategy("ensemble", layers=2)
    with pytest.raises(ConfigError, match="unknown strategy 'beam'"):
        make_strategy("beam")
    assert strategy_names() == ("toa", "random", "prs", "ensemble", "seq-refine", "moa")
