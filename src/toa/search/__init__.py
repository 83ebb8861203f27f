"""Search strategies over agents: TOA (the MCTS of arXiv 2412.17061) and the paper's baselines.

A strategy takes a prompt and a `SearchContext` (which makes and scores the calls), and optionally
a `Prior` (what earlier prompts taught; TOA's default 'bayes' rule uses it), and returns the whole
`SearchTree`. The tree is plain data; selection rules and reward normalisations are
small pure functions; templates are data with stable hashes.
"""

from __future__ import annotations

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
