"""Golden trees: a seeded run of every strategy must reproduce its stored tree exactly.

The trees live in tests/search/golden/<case>.json. After a deliberate change of behaviour (or of a
built-in template: the trees record template hashes), regenerate them and review the diff:

    TOA_UPDATE_GOLDEN=1 .venv/bin/pytest tests/search/test_golden.py
"""

from __future__ import annotations

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
from toa.testing.sim_context import SimulatedContext, simulated_prompts
from toa.testing.world import World

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("TOA_UPDATE_GOLDEN") == "1"
BUDGET = 12

CASES: dict[str, tuple[Strategy, dict[str, float]]] = {
    "toa": (TOASearch(), {}),
    "toa-parallel3": (TOASearch(TOAConfig(parallel_plays=3)), {}),
    "toa-faults": (TOASearch(), {"generate_failure_rate": 0.2, "score_failure_rate": 0.15}),
    "toa-alpaca-preset": (TOASearch(toa_preset("alpaca", width=3)), {}),
    "random": (RandomSampling(SingleAgentConfig(agent="agent_c")), {}),
    "prs": (PRSSearch(SingleAgentConfig(agent="agent_c")), {}),
    "ensemble": (ParallelEnsemble(), {}),
    "seq-refine": (SequentialRefine(), {}),
    "moa": (MixtureOfAgents(MoAConfig(layers=3, n_aggregate=2)), {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_seeded_tree_matches_its_golden_file(case: str) -> None:
    strategy, faults = CASES[case]
    ctx = SimulatedContext(World.named("helps", seed=1), seed=3, **faults)
    prompt = simulated_prompts(2, seed=11)[1]
    tree = await strategy.run(prompt, ctx, budget=BUDGET, seed=7)
    check_tree(tree, budget=BUDGET)
    path = GOLDEN / f"{case}.json"
    if UPDATE:
        path.write_text(json.dumps(tree.to_dict(), indent=1, ensure_ascii=False) + "\n")
    assert path.exists(), f"missing {path.name}; run with TOA_UPDATE_GOLDEN=1 to create it"
    assert tree.to_dict() == json.loads(path.read_text())


def test_every_golden_file_belongs_to_a_case() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == sorted(CASES)
