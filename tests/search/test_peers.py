"""The TreeQuest AB-MCTS-A peer row (benchmarks/peers.py) on the simulated context."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tree_checks import check_tree

from toa.search import SearchTree, Strategy
from toa.testing.sim_context import SimulatedContext, simulated_prompts
from toa.testing.world import World

pytest.importorskip("treequest")
np = pytest.importorskip("numpy")  # a dependency of treequest
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from peers import ABMCTSA, available  # noqa: E402  (after the skip and the path)

PROMPTS = simulated_prompts(4)


async def _run(
    budget: int,
    prompt_index: int = 0,
    seed: int = 0,
    *,
    generate_failure_rate: float = 0.0,
    score_failure_rate: float = 0.0,
) -> tuple[SearchTree, SimulatedContext]:
    ctx = SimulatedContext(
        World.named("helps"),
        generate_failure_rate=generate_failure_rate,
        score_failure_rate=score_failure_rate,
    )
    tree = await ABMCTSA().run(PROMPTS[prompt_index], ctx, budget=budget, seed=seed)
    return tree, ctx


def test_it_is_a_strategy_and_treequest_is_available() -> None:
    assert available()
    assert isinstance(ABMCTSA(), Strategy)
    assert ABMCTSA.name == "ab-mcts-a"


@pytest.mark.parametrize("budget", [1, 5, 16])
@pytest.mark.parametrize("prompt_index", range(len(PROMPTS)))
async def test_exactly_budget_calls_and_a_sound_tree(budget: int, prompt_index: int) -> None:
    tree, ctx = await _run(budget, prompt_index)
    check_tree(tree, budget=budget)
    assert len(ctx.calls) == budget
    assert sum(len(c) for c in ctx.score_calls) == budget  # one score per generation
    best = tree.best()
    assert best is not None
    assert best.reward == max(n.reward or 0.0 for n in tree.scored())
    assert tree.strategy == "ab-mcts-a"
    assert tree.config["peer"].startswith("treequest ")
    for node in tree.responses():
        if node.action == "refine":
            (parent,) = node.parents
            assert tree.node(node.parent).parent == parent
            assert tree.node(parent).text is not None
            assert ctx.calls[[c.node_id for c in ctx.calls].index(node.id)].kind == "refine"


async def test_several_agents_and_refinements_at_budget_16() -> None:
    for i in range(len(PROMPTS)):
        tree, ctx = await _run(16, i)
        assert len({c.agent for c in ctx.calls}) > 1
        assert any(c.kind == "refine" for c in ctx.calls)
        assert any(n.action == "refine" for n in tree.scored())


async def test_same_seed_same_tree_other_seed_other_tree() -> None:
    first, _ = await _run(16, 1, seed=3)
    again, _ = await _run(16, 1, seed=3)
    other, _ = await _run(16, 1, seed=4)
    assert first.to_dict() == again.to_dict()
    assert other.to_dict() != first.to_dict()


async def test_numpy_global_generator_is_left_as_it_was() -> None:
    np.random.seed(123)
    expected = np.random.random(3)
    np.random.seed(123)
    await _run(5)
    assert np.random.random(3).tolist() == expected.tolist()


async def test_failures_are_recorded_and_never_ranked() -> None:
    failures = 0
    for i in range(len(PROMPTS)):
        tree, ctx = await _run(16, i, generate_failure_rate=0.3, score_failure_rate=0.1)
        check_tree(tree, budget=16)
        assert len(ctx.calls) == 16
        failed = [n for n in tree.responses() if n.failed]
        failures += len(failed)
        assert all(n.reward is None and n.q is None for n in failed)
        assert all(not n.failed for n in tree.ranked())
        for node in tree.responses():  # a refinement always carries a real text
            for parent in node.parents:
                assert tree.node(parent).text is not None
    assert failures > 0


async def test_everything_fails_and_the_budget_is_still_spent() -> None:
    tree, ctx = await _run(8, generate_failure_rate=1.0)
    check_tree(tree, budget=8)
    assert len(ctx.calls) == 8
    assert tree.best() is None
    assert all(c.kind == "fresh" for c in ctx.calls)


async def test_rewards_outside_unit_interval_switch_to_running_rank() -> None:
    class Shifted(SimulatedContext):
        async def score(self, prompt, responses, *, node_ids):  # type: ignore[no-untyped-def]
            scores = await super().score(prompt, responses, node_ids=node_ids)
            return [s * 10 - 3 if isinstance(s, float) else s for s in scores]

    ctx = Shifted(World.named("helps"))
    tree = await ABMCTSA().run(PROMPTS[0], ctx, budget=16, seed=0)
    check_tree(tree, budget=16)
    assert all(n.q is not None and 0.0 <= n.q <= 1.0 for n in tree.scored())
    assert any(n.reward is not None and n.reward > 1.0 for n in tree.scored())
