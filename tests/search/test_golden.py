"""Golden trees: a seeded run of every strategy must reproduce its stored tree exactly.

The trees live in tests/search/golden/<case>.json. After a deliberate change of behaviour (or of a
built-in template: the trees record template hashes), regenerate them and review the diff:

    TOA_UPDATE_GOLDEN=1 .venv/bin/pytest tests/search/test_golden.py
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from tree_checks import check_tree

from toa.search import (
    MixtureOfAgents,
    MoAConfig,
    ParallelEnsemble,
    PRSSearch,
    RandomSampling,
    SequentialRefine,
    SingleAgentConfig,
    Strategy,
    TOAConfig,
    TOASearch,
    toa_preset,
)
from toa.search.priors import Prior, evidence_from_tree
from toa.testing.sim_context import SimulatedContext, simulated_prompts
from toa.testing.world import World

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("TOA_UPDATE_GOLDEN") == "1"
BUDGET = 12

CASES: dict[str, tuple[Strategy, dict[str, float]]] = {
    "toa": (TOASearch(), {}),
    "toa-parallel3": (TOASearch(TOAConfig(parallel_plays=3)), {}),
    "toa-faults": (TOASearch(), {"generate_failure_rate": 0.2, "score_failure_rate": 0.15}),
    # The paper's UCB rule, unchanged since it was the default (these files predate 'bayes').
    "toa-ucb": (TOASearch(TOAConfig(rule="ucb")), {}),
    "toa-ucb-parallel3": (TOASearch(TOAConfig(rule="ucb", parallel_plays=3)), {}),
    "toa-ucb-faults": (
        TOASearch(TOAConfig(rule="ucb")),
        {"generate_failure_rate": 0.2, "score_failure_rate": 0.15},
    ),
    "toa-alpaca-preset": (TOASearch(toa_preset("alpaca", width=3)), {}),
    "random": (RandomSampling(SingleAgentConfig(agent="agent_c")), {}),
    "prs": (PRSSearch(SingleAgentConfig(agent="agent_c")), {}),
    "ensemble": (ParallelEnsemble(), {}),
    "seq-refine": (SequentialRefine(), {}),
    "moa": (MixtureOfAgents(MoAConfig(layers=3, n_aggregate=2)), {}),
}


def _learned_prior() -> Prior:
    """A fixed prior: the evidence of seeded ensemble and seq-refine trees on other prompts."""
    ctx = SimulatedContext(World.named("helps", seed=1), seed=3)
    prior = Prior.empty(ctx.agents)
    for i, prompt in enumerate(simulated_prompts(6, seed=12)):
        strategy: Strategy = ParallelEnsemble() if i % 2 else SequentialRefine()
        prior = prior + evidence_from_tree(asyncio.run(strategy.run(prompt, ctx, budget=9, seed=7)))
    return prior


@pytest.mark.parametrize("case", sorted([*CASES, "toa-prior"]))
async def test_seeded_tree_matches_its_golden_file(case: str) -> None:
    strategy, faults = CASES.get(case, (TOASearch(), {}))
    prior = await asyncio.to_thread(_learned_prior) if case == "toa-prior" else None
    ctx = SimulatedContext(World.named("helps", seed=1), seed=3, **faults)
    prompt = simulated_prompts(2, seed=11)[1]
    tree = await strategy.run(prompt, ctx, budget=BUDGET, seed=7, prior=prior)
    check_tree(tree, budget=BUDGET)
    path = GOLDEN / f"{case}.json"
    if UPDATE:
        path.write_text(json.dumps(tree.to_dict(), indent=1, ensure_ascii=False) + "\n")
    assert path.exists(), f"missing {path.name}; run with TOA_UPDATE_GOLDEN=1 to create it"
    assert tree.to_dict() == json.loads(path.read_text())


def test_every_golden_file_belongs_to_a_case() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == sorted([*CASES, "toa-prior"])
