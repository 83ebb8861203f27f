"""TOA: configuration, presets, the staged search, failures, determinism and parallel plays."""

from __future__ import annotations

from collections import Counter

import pytest
from tree_checks import DeadAgentContext, check_tree

from toa.errors import ConfigError
from toa.search import (
    Normalisation,
    SearchTree,
    Templates,
    TOAConfig,
    TOASearch,
    TOAState,
    paper_preset,
    run_play,
    toa_preset,
)
from toa.testing.sim_context import SimulatedContext, simulated_prompts
from toa.testing.world import AgentProfile, World
from toa.types import Prompt


async def test_width_below_the_number_of_agents_is_rejected_naming_both(
    ctx: SimulatedContext, prompt: Prompt
) -> None:
    with pytest.raises(ConfigError, match=r"width=2 is smaller than the number of agents \(3\)"):
        await TOASearch(TOAConfig(rule="ucb", width=2)).run(prompt, ctx, budget=10, seed=0)
    assert ctx.calls == []


@pytest.mark.parametrize(
    ("config", "budget", "agents", "width"),
    [
        (TOAConfig(rule="ucb"), 160, 5, 53),  # the paper: K * n / 3
        (TOAConfig(rule="ucb"), 8, 3, 3),  # derived width never falls below K
        (toa_preset("math"), 64, 4, 32),  # math: K * n / 2
        (TOAConfig(rule="ucb", width=7), 100, 3, 7),
    ],
)
def test_resolve_width(config: TOAConfig, budget: int, agents: int, width: int) -> None:
    assert config.resolve_width(budget=budget, n_agents=agents) == width


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alpha": -0.1},
        {"alpha": float("nan")},
        {"width": 0},
        {"width_fraction": 0.0},
        {"width_fraction": 1.5},
        {"topk_child": 0},
        {"improvement_cap": 0},
        {"parallel_plays": 0},
    ],
)
def test_bad_settings_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="toa:"):
        TOAConfig(**kwargs)  # type: ignore[arg-type]


def test_paper_presets() -> None:
    alpaca = paper_preset("alpaca")
    assert (alpaca.budget, alpaca.temperature, alpaca.config.alpha) == (160, 0.7, 0.01)
    assert alpaca.config.normalisation == Normalisation(kind="sigmoid", tau=0.1)
    assert alpaca.config.resolve_width(budget=160, n_agents=5) == 53
    wmt = paper_preset("wmt")
    assert (wmt.task, wmt.config.alpha, wmt.config.normalisation.tau) == ("translation", 0.05, 1.0)
    assert paper_preset("ultrafeedback").temperature == 0.8
    math = paper_preset("math")
    assert (math.budget, math.config.alpha, math.config.width_fraction) == (None, 0.1, 0.5)
    for preset in ("alpaca", "wmt", "ultrafeedback", "math"):
        assert paper_preset(preset).config.topk_child == 1
        assert paper_preset(preset).top_p == 1.0
        assert paper_preset(preset).max_tokens == 2048
    assert toa_preset("alpaca", parallel_plays=4).parallel_plays == 4
    with pytest.raises(ConfigError, match="unknown preset"):
        paper_preset("gsm8k")
    with pytest.raises(ConfigError, match="preset 'alpaca'"):
        toa_preset("alpaca", beta=1)


async def test_budget_is_spent_exactly_and_each_play_scored_once(
    ctx: SimulatedContext, prompt: Prompt
) -> None:
    tree = await TOASearch(TOAConfig(rule="ucb")).run(prompt, ctx, budget=23, seed=1)
    check_tree(tree, budget=23)
    assert len(ctx.calls) == 23
    assert all(len(call) == 1 for call in ctx.score_calls)
    assert sorted(i for (i,) in ctx.score_calls) == sorted(n.id for n in tree.responses())
    assert tree.config["resolved_width"] == 7
    assert tree.config["templates"] == Templates.for_task("instruction").hashes()


async def test_the_search_is_staged_by_width(ctx: SimulatedContext) -> None:
    for prompt in simulated_prompts(6):
        tree = await TOASearch(TOAConfig(rule="ucb")).run(prompt, ctx, budget=30, seed=0)
        width = tree.config["resolved_width"]
        responses = tree.responses()
        assert [n.depth for n in responses[:width]] == [1] * width
        for node in responses:  # nothing goes below depth d before depth d holds `width`
            earlier = [m for m in responses if m.id < node.id and m.depth == node.depth - 1]
            assert node.depth == 1 or len(earlier) >= width


async def test_refinements_refine_their_parent_and_fresh_arms_copy_root_statistics(
    ctx: SimulatedContext, prompt: Prompt
) -> None:
    tree = await TOASearch(TOAConfig(rule="ucb")).run(prompt, ctx, budget=30, seed=0)
    refined = [n for n in tree.responses() if n.action == "refine"]
    assert refined
    for node in refined:
        (parent,) = node.parents
        assert parent == tree.node(node.parent).parent
    deep_fresh = [
        n for n in tree.nodes if n.kind == "agent" and n.action == "fresh" and n.depth > 1
    ]
    assert deep_fresh
    assert any(n.prior_visits > 0 for n in deep_fresh)
    assert all(n.prior_visits == 0 for n in tree.nodes if n.depth <= 1)


async def test_fresh_arms_can_be_switched_off(ctx: SimulatedContext, prompt: Prompt) -> None:
    tree = await TOASearch(TOAConfig(rule="ucb", fresh_arms=False)).run(
        prompt, ctx, budget=30, seed=0
    )
    check_tree(tree, budget=30)
    assert all(n.action == "refine" for n in tree.nodes if n.kind == "agent" and n.depth > 1)


async def test_same_seed_same_tree_other_seed_other_tree(helps: World) -> None:
    prompts = simulated_prompts(4)

    async def trees(seed: int) -> list[dict[str, object]]:
        search = TOASearch(TOAConfig(rule="ucb"))
        return [(await search.run(p, SimulatedContext(helps), budget=20, seed=seed)).to_dict()
                for p in prompts]  # fmt: skip

    first = await trees(0)
    assert first == await trees(0)
    assert first != await trees(1)


async def test_failures_cost_budget_are_recorded_and_never_ranked(
    helps: World, prompt: Prompt
) -> None:
    ctx = SimulatedContext(helps, generate_failure_rate=0.3, score_failure_rate=0.2, seed=4)
    tree = await TOASearch(TOAConfig(rule="ucb")).run(prompt, ctx, budget=40, seed=0)
    check_tree(tree, budget=40)
    generation_failures = [n for n in tree.responses() if n.error is not None]
    score_failures = [n for n in tree.responses() if n.reward_error is not None]
    assert generation_failures
    assert score_failures
    assert all("ServerError" in (n.error or "") for n in generation_failures)
    assert tree.root.visits == 40 - len(generation_failures) - len(score_failures)


async def test_unavailable_agents_are_skipped(helps: World, prompt: Prompt) -> None:
    ctx = SimulatedContext(helps, unavailable={"agent_b"})
    tree = await TOASearch(TOAConfig(rule="ucb")).run(prompt, ctx, budget=25, seed=0)
    check_tree(tree, budget=25)
    assert {c.agent for c in ctx.calls} == {"agent_a", "agent_c"}


async def test_a_run_ends_when_every_agent_is_unavailable(helps: World, prompt: Prompt) -> None:
    ctx = SimulatedContext(helps, unavailable=set(helps.agent_names))
    tree = await TOASearch(TOAConfig(rule="ucb")).run(prompt, ctx, budget=6, seed=0)
    check_tree(tree, budget=6)
    assert all((n.error or "").startswith("AgentUnavailableError") for n in tree.responses())
    assert tree.best() is None


async def test_a_failing_agent_does_not_swallow_the_budget(helps: World) -> None:
    ctx = DeadAgentContext(helps)
    failed = 0
    for prompt in simulated_prompts(6):
        tree = await TOASearch(TOAConfig(rule="ucb")).run(prompt, ctx, budget=40, seed=0)
        check_tree(tree, budget=40)
        failed += sum(1 for n in tree.responses() if n.error is not None)
    assert failed < 0.2 * 6 * 40


async def _sequential(prompt: Prompt, ctx: SimulatedContext, budget: int) -> SearchTree:
    state = TOAState(
        prompt, ctx.agents, config=TOAConfig(rule="ucb"), budget=budget, seed=0,
        templates=Templates.for_task("instruction"),
    )  # fmt: skip
    for _ in range(budget):
        await run_play(state, ctx, state.start_play(ctx.is_available))
    return state.tree


async def test_one_parallel_play_is_the_sequential_search(helps: World) -> None:
    for prompt in simulated_prompts(3):
        expected = await _sequential(prompt, SimulatedContext(helps), 30)
        tree = await TOASearch(TOAConfig(rule="ucb", parallel_plays=1)).run(
            prompt, SimulatedContext(helps), budget=30, seed=0
        )
        assert tree == expected
        assert tree.to_dict() == expected.to_dict()


async def test_parallel_plays_spread_by_virtual_loss(helps: World) -> None:
    for prompt in simulated_prompts(3):
        ctx = SimulatedContext(helps)
        tree = await TOASearch(TOAConfig(rule="ucb", parallel_plays=3)).run(
            prompt, ctx, budget=30, seed=0
        )
        check_tree(tree, budget=30)
        first_three = [n.agent for n in tree.responses()[:3]]
        assert sorted(first_three) == ["agent_a", "agent_b", "agent_c"]
        assert tree != await _sequential(prompt, SimulatedContext(helps), 30)


def _specialists(seed: int) -> World:
    """'fresher' writes far better first answers; 'refiner' is by far the best at rewriting."""
    return World(
        agents=(
            AgentProfile("fresher", fresh_mean=(0.70,), refine_gain=(-0.20,)),
            AgentProfile("refiner", fresh_mean=(0.25,), refine_gain=(0.50,)),
            AgentProfile("plain", fresh_mean=(0.30,), refine_gain=(-0.10,)),
        ),
        n_families=1,
        seed=seed,
        name="specialists",
    )


async def test_plays_go_to_the_best_fresh_agent_and_refinements_to_the_best_refiner() -> None:
    depth_one: Counter[str] = Counter()
    refinements: Counter[str] = Counter()
    for seed, prompt in enumerate(simulated_prompts(8, n_families=1)):
        ctx = SimulatedContext(_specialists(seed))
        tree = await TOASearch(TOAConfig(rule="ucb")).run(prompt, ctx, budget=60, seed=seed)
        depth_one.update(n.agent for n in tree.responses() if n.depth == 1)
        refinements.update(n.agent for n in tree.responses() if n.action == "refine")
    assert depth_one["fresher"] > 0.5 * sum(depth_one.values())
    assert refinements["refiner"] > 0.5 * sum(refinements.values())
