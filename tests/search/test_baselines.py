"""Each baseline's call pattern, checked exactly against TOA_SPEC's definition."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import pytest
from tree_checks import check_tree

from toa.errors import ConfigError
from toa.search import (
    MixtureOfAgents,
    MoAConfig,
    ParallelEnsemble,
    PRSSearch,
    RandomSampling,
    SequentialRefine,
    SingleAgentConfig,
    Strategy,
)
from toa.testing.sim_context import SimulatedContext, simulated_prompts
from toa.testing.world import World
from toa.types import Prompt


async def test_random_is_n_fresh_samples_from_one_agent_scored_in_one_call(
    ctx: SimulatedContext, prompt: Prompt
) -> None:
    search = RandomSampling(SingleAgentConfig(agent="agent_b"))
    tree = await search.run(prompt, ctx, budget=7, seed=0)
    check_tree(tree, budget=7)
    assert [(c.agent, c.kind) for c in ctx.calls] == [("agent_b", "fresh")] * 7
    assert len(ctx.score_calls) == 1
    assert len(ctx.score_calls[0]) == 7
    (arm,) = tree.root.children
    assert len(tree.node(arm).children) == 7
    assert tree.config["agent"] == "agent_b"


async def test_single_agent_baselines_default_to_the_first_agent(
    ctx: SimulatedContext, prompt: Prompt
) -> None:
    await RandomSampling().run(prompt, ctx, budget=2, seed=0)
    assert {c.agent for c in ctx.calls} == {"agent_a"}
    with pytest.raises(ConfigError, match="'agent_z' is not one of"):
        await PRSSearch(SingleAgentConfig(agent="agent_z")).run(prompt, ctx, budget=2, seed=0)


@pytest.mark.parametrize(("budget", "fresh", "refine"), [(8, 4, 4), (9, 5, 4), (1, 1, 0)])
async def test_prs_is_half_fresh_then_half_refinements_of_the_single_best(
    ctx: SimulatedContext, prompt: Prompt, budget: int, fresh: int, refine: int
) -> None:
    tree = await PRSSearch(SingleAgentConfig(agent="agent_c")).run(
        prompt, ctx, budget=budget, seed=0
    )
    check_tree(tree, budget=budget)
    kinds = [(c.agent, c.kind) for c in ctx.calls]
    assert kinds == [("agent_c", "fresh")] * fresh + [("agent_c", "refine")] * refine
    first_half = [n for n in tree.responses() if n.action == "fresh"]
    best = max(first_half, key=lambda n: n.reward or 0.0)
    for call in ctx.calls[fresh:]:
        assert call.parent_qualities == (best.reward,)
    for node in tree.responses()[fresh:]:
        assert node.parents == (best.id,)
    assert [len(c) for c in ctx.score_calls] == ([fresh, refine] if refine else [fresh])


async def test_prs_refines_nothing_when_no_fresh_sample_was_scored(
    helps: World, prompt: Prompt
) -> None:
    ctx = SimulatedContext(helps, score_failure_rate=1.0)
    tree = await PRSSearch().run(prompt, ctx, budget=6, seed=0)
    check_tree(tree, budget=6)
    assert [c.kind for c in ctx.calls] == ["fresh"] * 6


async def test_ensemble_is_n_over_k_fresh_per_agent_remainder_to_the_first(
    ctx: SimulatedContext, prompt: Prompt
) -> None:
    tree = await ParallelEnsemble().run(prompt, ctx, budget=8, seed=0)
    check_tree(tree, budget=8)
    assert Counter(c.agent for c in ctx.calls) == {"agent_a": 3, "agent_b": 3, "agent_c": 2}
    assert {c.kind for c in ctx.calls} == {"fresh"}
    assert [len(c) for c in ctx.score_calls] == [8]


async def test_seq_refine_rounds_are_shuffled_chains(helps: World) -> None:
    orders: set[tuple[str, ...]] = set()
    for prompt in simulated_prompts(4):
        ctx = SimulatedContext(helps)
        tree = await SequentialRefine().run(prompt, ctx, budget=8, seed=0)
        check_tree(tree, budget=8)
        assert [len(c) for c in ctx.score_calls] == [3, 3, 2]  # one score call per round
        rounds = [ctx.calls[0:3], ctx.calls[3:6], ctx.calls[6:8]]
        quality = {n.id: n.reward for n in tree.responses()}
        for calls in rounds:
            assert len({c.agent for c in calls}) == len(calls)  # each agent once per round
            assert [c.kind for c in calls] == ["fresh"] + ["refine"] * (len(calls) - 1)
            for before, after in pairwise(calls):
                assert after.parent_qualities == (quality[before.node_id],)
            orders.add(tuple(c.agent for c in calls))
    assert len(orders) > 1


async def test_seq_refine_chain_survives_a_failed_link(helps: World, prompt: Prompt) -> None:
    ctx = SimulatedContext(helps, generate_failure_rate=0.4, seed=2)
    tree = await SequentialRefine().run(prompt, ctx, budget=30, seed=0)
    check_tree(tree, budget=30)
    assert any(n.error for n in tree.responses())


async def test_moa_layers_blocks_and_a_budget_cut_mid_layer(
    ctx: SimulatedContext, prompt: Prompt
) -> None:
    tree = await MixtureOfAgents(MoAConfig(layers=4)).run(prompt, ctx, budget=14, seed=0)
    check_tree(tree, budget=14)
    kinds = [c.kind for c in ctx.calls]
    assert kinds == ["fresh"] * 3 + ["aggregate"] * 9 + ["fresh"] * 2
    assert [c.agent for c in ctx.calls[12:]] == ["agent_a", "agent_b"]
    assert [len(c) for c in ctx.score_calls] == [3, 3, 3, 3, 2]
    reward = {n.id: n.reward for n in tree.responses()}
    for layer in range(1, 4):
        previous = tuple(reward[c.node_id] for c in ctx.calls[3 * layer - 3 : 3 * layer])
        for call in ctx.calls[3 * layer : 3 * layer + 3]:
            assert call.parent_qualities == previous
    aggregate = tree.responses()[5]
    assert len(aggregate.parents) == 3
    assert aggregate.depth == 2
    assert max(n.depth for n in tree.responses()) == 4  # every layer's responses are candidates


async def test_moa_n_aggregate_and_system_role(ctx: SimulatedContext, prompt: Prompt) -> None:
    config = MoAConfig(layers=2, n_aggregate=2, aggregator_role="system")
    tree = await MixtureOfAgents(config).run(prompt, ctx, budget=6, seed=0)
    check_tree(tree, budget=6)
    for call in ctx.calls[3:]:
        assert len(call.parent_qualities) == 2
    assert all(len(n.parents) == 2 for n in tree.responses()[3:])


@pytest.mark.parametrize(
    "kwargs", [{"layers": 0}, {"n_aggregate": 0}, {"aggregator_role": "assistant"}]
)
def test_moa_bad_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="moa:"):
        MoAConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "search",
    [RandomSampling(), PRSSearch(), ParallelEnsemble(), SequentialRefine(), MixtureOfAgents()],
)
async def test_baselines_reject_a_bad_budget(
    search: Strategy, ctx: SimulatedContext, prompt: Prompt
) -> None:
    with pytest.raises(ConfigError, match="budget must be an integer >= 1"):
        await search.run(prompt, ctx, budget=0, seed=0)


async def test_baselines_record_failures_of_an_unavailable_agent(
    helps: World, prompt: Prompt
) -> None:
    ctx = SimulatedContext(helps, unavailable={"agent_b"})
    tree = await ParallelEnsemble().run(prompt, ctx, budget=6, seed=0)
    check_tree(tree, budget=6)
    failed = [n for n in tree.responses() if n.error]
    assert len(failed) == 2
    assert all(n.agent == "agent_b" for n in failed)
