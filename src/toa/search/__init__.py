"""Search strategies over agents: TOA (the MCTS of arXiv 2412.17061) and the paper's baselines.

A strategy takes a prompt and a `SearchContext` (which makes and scores the calls), and optionally
a `Prior` (what earlier prompts taught; TOA's default 'bayes' rule uses it), and returns the whole
`SearchTree`. The tree is plain data; selection rules and reward normalisations are
small pure functions; templates are data with stable hashes.

The names load on first use (PEP 562), so that reading `toa.search.names` (the strategy names
the command line needs at start-up) does not load every strategy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from toa.search.baselines import (
        ParallelEnsemble,
        PRSSearch,
        RandomSampling,
        SequentialRefine,
        SingleAgentConfig,
    )
    from toa.search.bayes import BayesState
    from toa.search.context import SearchContext, Strategy, derive_rng
    from toa.search.moa import MixtureOfAgents, MoAConfig
    from toa.search.normalise import (
        Normalisation,
        NormalisationKind,
        Normaliser,
        normalise_by_min_max,
        normalise_by_rank,
        normalise_by_sigmoid,
    )
    from toa.search.presets import Preset, paper_preset, toa_preset
    from toa.search.priors import Prior, evidence_from_tree, load_prior
    from toa.search.selection import (
        ArmStats,
        improvement_reached,
        is_fully_expanded,
        select_by_ucb,
        top_k_by_reward,
        ucb_score,
        width_reached,
    )
    from toa.search.strategies import make_strategy, strategy_names
    from toa.search.templates import (
        TaskName,
        Template,
        TemplateRole,
        Templates,
        aggregate_messages,
        fresh_messages,
        refine_messages,
        template_hash,
    )
    from toa.search.toa import Play, PlayState, TOAConfig, TOASearch, TOAState, new_state, run_play
    from toa.search.tree import Action, Node, NodeKind, SearchTree, back_up

_LAZY = {
    "Action": "toa.search.tree",
    "ArmStats": "toa.search.selection",
    "BayesState": "toa.search.bayes",
    "MixtureOfAgents": "toa.search.moa",
    "MoAConfig": "toa.search.moa",
    "Node": "toa.search.tree",
    "NodeKind": "toa.search.tree",
    "Normalisation": "toa.search.normalise",
    "NormalisationKind": "toa.search.normalise",
    "Normaliser": "toa.search.normalise",
    "PRSSearch": "toa.search.baselines",
    "ParallelEnsemble": "toa.search.baselines",
    "Play": "toa.search.toa",
    "PlayState": "toa.search.toa",
    "Preset": "toa.search.presets",
    "Prior": "toa.search.priors",
    "RandomSampling": "toa.search.baselines",
    "SearchContext": "toa.search.context",
    "SearchTree": "toa.search.tree",
    "SequentialRefine": "toa.search.baselines",
    "SingleAgentConfig": "toa.search.baselines",
    "Strategy": "toa.search.context",
    "TOAConfig": "toa.search.toa",
    "TOASearch": "toa.search.toa",
    "TOAState": "toa.search.toa",
    "TaskName": "toa.search.templates",
    "Template": "toa.search.templates",
    "TemplateRole": "toa.search.templates",
    "Templates": "toa.search.templates",
    "aggregate_messages": "toa.search.templates",
    "back_up": "toa.search.tree",
    "derive_rng": "toa.search.context",
    "evidence_from_tree": "toa.search.priors",
    "fresh_messages": "toa.search.templates",
    "improvement_reached": "toa.search.selection",
    "is_fully_expanded": "toa.search.selection",
    "load_prior": "toa.search.priors",
    "make_strategy": "toa.search.strategies",
    "new_state": "toa.search.toa",
    "normalise_by_min_max": "toa.search.normalise",
    "normalise_by_rank": "toa.search.normalise",
    "normalise_by_sigmoid": "toa.search.normalise",
    "paper_preset": "toa.search.presets",
    "refine_messages": "toa.search.templates",
    "run_play": "toa.search.toa",
    "select_by_ucb": "toa.search.selection",
    "strategy_names": "toa.search.strategies",
    "template_hash": "toa.search.templates",
    "toa_preset": "toa.search.presets",
    "top_k_by_reward": "toa.search.selection",
    "ucb_score": "toa.search.selection",
    "width_reached": "toa.search.selection",
}


def __getattr__(name: str) -> Any:
    """Load a public name's module on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'toa.search' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "Action",
    "ArmStats",
    "BayesState",
    "MixtureOfAgents",
    "MoAConfig",
    "Node",
    "NodeKind",
    "Normalisation",
    "NormalisationKind",
    "Normaliser",
    "PRSSearch",
    "ParallelEnsemble",
    "Play",
    "PlayState",
    "Preset",
    "Prior",
    "RandomSampling",
    "SearchContext",
    "SearchTree",
    "SequentialRefine",
    "SingleAgentConfig",
    "Strategy",
    "TOAConfig",
    "TOASearch",
    "TOAState",
    "TaskName",
    "Template",
    "TemplateRole",
    "Templates",
    "aggregate_messages",
    "back_up",
    "derive_rng",
    "evidence_from_tree",
    "fresh_messages",
    "improvement_reached",
    "is_fully_expanded",
    "load_prior",
    "make_strategy",
    "new_state",
    "normalise_by_min_max",
    "normalise_by_rank",
    "normalise_by_sigmoid",
    "paper_preset",
    "refine_messages",
    "run_play",
    "select_by_ucb",
    "strategy_names",
    "template_hash",
    "toa_preset",
    "top_k_by_reward",
    "ucb_score",
    "width_reached",
]
