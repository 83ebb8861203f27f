"""TOA's 'bayes' rule: Thompson sampling from priors, wider vs deeper, failures, determinism."""

from __future__ import annotations

from collections import Counter

import pytest
from tree_checks import DeadAgentContext, check_tree

from toa.search import (
    BayesState,
    Prior,
    SearchTree,
    Templates,
    TOAConfig,
    TOASearch,
    evidence_from_tree,
    run_play,
)
from toa.search.bayes import Belief, Params, fresh_chance
from toa.search.priors import ArmCounts
from toa.testing.sim_context import SimulatedContext, simulated_prompts
from toa.testing.world import AgentProfile, World
from toa.types import Prompt

AGENTS = ("agent_a", "agent_b", "agent_c")


def _actions(tree: SearchTree) -> Counter[tuple[str, str | None]]:
    return Counter((n.agent, n.action) for n in tree.responses())


async def _learn(world: World, n: int, budget: int, seed: int = 0) -> Prior:
    """The online prior after `n` prompts of `world`, one after another."""
    ctx = SimulatedContext(world)
    prior = Prior.empty(ctx.agents)
    for prompt in simulated_prompts(n, seed=seed + 100):
        tree = await TOASearch().run(prompt, ctx, budget=budget, seed=seed, prior=prior)
        prior = prior + evidence_from_tree(tree)
    return prior


async def test_budget_spent_once_each_play_scored_once_and_the_tree_records_rule_and_prior(
    ctx: SimulatedContext, prompt: Prompt
) -> None:
    prior = await _learn(World.named("helps"), 3, 8)
    tree = await TOASearch().run(prompt, ctx, budget=23, seed=1, prior=prior)
    check_tree(tree, budget=23)
    assert len(ctx.calls) == 23
    assert all(len(call) == 1 for call in ctx.score_calls)
    assert tree.config["rule"] == "bayes"
    assert Prior.from_dict(tree.config["prior"]).to_json() == prior.to_json()
    cold = await TOASearch().run(prompt, SimulatedContext(World.named("helps")), budget=5, seed=1)
    assert cold.config["prior"] is None


async def test_refinements_refine_the_best_response_so_far(
    ctx: SimulatedContext, prompt: Prompt
) -> None:
    tree = await TOASearch().run(prompt, ctx, budget=30, seed=0)
    best: float = -1.0
    best_id = -1
    for node in tree.responses():  # sequential: node order is scoring order
        if node.action == "refine":
            assert node.parents == (best_id,)
            assert tree.node(node.parent).parent == best_id  # under the refine arm of the best
        elif node.action == "fresh":
            assert tree.node(node.parent).parent == 0  # fresh answers hang under the root
        if node.reward is not None and node.reward > best:
            best, best_id = node.reward, node.id
    assert any(n.action == "refine" for n in tree.responses())


async def test_same_seed_same_tree_other_seed_other_tree(helps: World) -> None:
    prompt = simulated_prompts(1)[0]
    trees = [
        (await TOASearch().run(prompt, SimulatedContext(helps), budget=20, seed=s)).to_dict()
        for s in (3, 3, 4)
    ]
    assert trees[0] == trees[1]
    assert trees[0] != trees[2]


async def test_a_prior_that_refinement_wins_sends_the_search_deep() -> None:
    helps = World.named("helps")
    prior = await _learn(helps, 30, 12)
    assert prior.prompts == 30
    refined = Counter[str]()
    cold_refined = Counter[str]()
    for prompt in simulated_prompts(10, seed=7):
        warm = await TOASearch().run(
            prompt, SimulatedContext(helps), budget=12, seed=0, prior=prior
        )
        cold = await TOASearch().run(prompt, SimulatedContext(helps), budget=12, seed=0)
        refined.update(
            a for (a, kind), n in _actions(warm).items() for _ in range(n) if kind == "refine"
        )
        cold_refined.update(
            a for (a, kind), n in _actions(cold).items() for _ in range(n) if kind == "refine"
        )
    # agent_a is helps' best refiner in every family: the prior puts most refinements on it
    assert refined["agent_a"] > 0.6 * sum(refined.values())
    assert refined["agent_a"] > cold_refined["agent_a"]


async def test_a_prior_that_rewrites_hurt_keeps_the_search_wide() -> None:
    hurts = World.named("hurts")
    prior = await _learn(hurts, 30, 12)
    fresh = refine = 0
    for prompt in simulated_prompts(10, seed=7):
        tree = await TOASearch().run(
            prompt, SimulatedContext(hurts), budget=12, seed=0, prior=prior
        )
        actions = _actions(tree)
        fresh += sum(n for (_a, kind), n in actions.items() if kind == "fresh")
        refine += sum(n for (_a, kind), n in actions.items() if kind == "refine")
    assert fresh > 3 * refine


async def test_a_prompt_s_own_evidence_overrides_a_wrong_prior() -> None:
    """The prior says agent_b writes the best answers; on this prompt it writes the worst.

    The prior weighs `prior_strength` plays per action (here 4): the prompt's own plays outweigh
    it after about as many."""
    world = World(
        agents=(
            AgentProfile("agent_a", (0.7,) * 3, (0.0,) * 3, fresh_std=0.1),
            AgentProfile("agent_b", (0.1,) * 3, (0.0,) * 3, fresh_std=0.1),
            AgentProfile("agent_c", (0.4,) * 3, (0.0,) * 3, fresh_std=0.1),
        )
    )
    wrong = Prior(
        AGENTS,
        50,
        fresh={
            "agent_a": ArmCounts(100, 5, 200, ranked=100),  # strength ~ 0.5
            "agent_b": ArmCounts(100, 60, 20, ranked=100),  # strength ~ 4.8
            "agent_c": ArmCounts(100, 5, 200, ranked=100),
        },
        refine={a: ArmCounts(100, 1) for a in AGENTS},
    )
    counts = Counter[str]()
    for prompt in simulated_prompts(6):
        tree = await TOASearch(TOAConfig(prior_strength=4)).run(
            prompt, SimulatedContext(world), budget=30, seed=0, prior=wrong
        )
        counts.update(n.agent for n in tree.responses()[10:])  # after the first ten plays
    assert counts["agent_a"] > counts["agent_b"]


async def _second_action(prior: Prior, seed: int) -> tuple[str, str | None]:
    """The action a state chooses for its second play (the first is fresh: nothing to refine)."""
    ctx = SimulatedContext(World.named("helps"))
    prompt = simulated_prompts(1)[0]
    state = BayesState(
        prompt, ctx.agents, config=TOAConfig(), budget=2, seed=seed,
        templates=Templates.for_task("instruction"), prior=prior,
    )  # fmt: skip
    await run_play(state, ctx, state.start_play(ctx.is_available))
    play = state.start_play(ctx.is_available)
    node = state.tree.node(play.node_id)
    return node.agent, node.action


async def test_thompson_sampling_follows_the_posterior_under_a_seed() -> None:
    prior = Prior(
        AGENTS,
        40,
        fresh={a: ArmCounts(100, 10, 100, ranked=100) for a in AGENTS},
        refine={
            "agent_a": ArmCounts(100, 70, 0, 70, 70),
            "agent_b": ArmCounts(100, 20, 0, 20, 10),
            "agent_c": ArmCounts(100, 20, 0, 20, 10),
        },
    )
    picks = Counter([await _second_action(prior, seed) for seed in range(200)])
    assert picks[("agent_a", "refine")] > 0.8 * 200
    assert len(picks) > 1  # poor arms are rarely played, but never ruled out
    assert [await _second_action(prior, s) for s in range(5)] == [
        await _second_action(prior, s) for s in range(5)
    ]


def test_beliefs_fall_as_the_best_rises_and_plays_in_flight_count_as_losses() -> None:
    prior = Params(1.0, 1.0, 0.5, 1.0)
    assert fresh_chance(1.0, 0.5) > fresh_chance(1.0, 0.9) > fresh_chance(0.5, 0.9)
    assert fresh_chance(1.0, 9 / 10) == pytest.approx(1 / 10)  # the exchangeable baseline
    idle, flying = (
        Belief("refine", wins=8, trials=10),
        Belief("refine", wins=8, trials=10, pending=3),
    )
    a, b = idle.refine_params(prior)
    fa, fb = flying.refine_params(prior)
    assert fa / (fa + fb) < a / (a + b)
    shape, rate = Belief("fresh").fresh_params(prior, 4, 2.0)
    fshape, frate = Belief("fresh", pending=2).fresh_params(prior, 4, 2.0)
    assert fshape / frate < shape / rate
    assert Belief("fresh", gained=2, gain=4.0).mean_gain(prior) == pytest.approx(4.5 / 3)


async def test_a_failing_agent_does_not_swallow_the_budget(helps: World) -> None:
    ctx = DeadAgentContext(helps)
    failed = 0
    for prompt in simulated_prompts(6):
        tree = await TOASearch().run(prompt, ctx, budget=40, seed=0)
        check_tree(tree, budget=40)
        failed += sum(1 for n in tree.responses() if n.error is not None)
        best = tree.best()
        assert best is not None
        assert best.agent != "agent_a"
    assert failed < 0.2 * 6 * 40


async def test_unavailable_agents_are_skipped_and_a_run_still_ends_when_all_are(
    helps: World, prompt: Prompt
) -> None:
    ctx = SimulatedContext(helps, unavailable={"agent_c"})
    tree = await TOASearch().run(prompt, ctx, budget=25, seed=0)
    check_tree(tree, budget=25)
    assert all(c.agent != "agent_c" for c in ctx.calls)
    dead = SimulatedContext(helps, unavailable=set(AGENTS))
    tree = await TOASearch().run(prompt, dead, budget=6, seed=0)
    assert tree.generations == 6
    assert tree.best() is None


async def test_failed_rewards_are_never_ranked(helps: World, prompt: Prompt) -> None:
    ctx = SimulatedContext(helps, generate_failure_rate=0.2, score_failure_rate=0.2, seed=4)
    tree = await TOASearch().run(prompt, ctx, budget=40, seed=0)
    check_tree(tree, budget=40)
    assert any(n.failed for n in tree.responses())
    assert all(not n.failed for n in tree.ranked())


@pytest.mark.parametrize("parallel", [1, 3])
async def test_state_driven_by_hand_is_the_search(helps: World, parallel: int) -> None:
    prompt = simulated_prompts(1)[0]
    config = TOAConfig(parallel_plays=parallel)
    tree = await TOASearch(config).run(prompt, SimulatedContext(helps), budget=17, seed=2)
    check_tree(tree, budget=17)
    if parallel > 1:
        return
    ctx = SimulatedContext(helps)
    state = BayesState(
        prompt, ctx.agents, config=config, budget=17, seed=2,
        templates=Templates.for_task("instruction"), prior=None,
    )  # fmt: skip
    while not state.done:
        await run_play(state, ctx, state.start_play(ctx.is_available))
    assert state.tree.to_dict() == tree.to_dict()
    kinds = ("fresh", "refine", "aggregate")
    assert set(state.beliefs()) == {f"{k}:{a}" for k in kinds for a in AGENTS}


def test_rule_settings_are_checked() -> None:
    from toa.errors import ConfigError

    with pytest.raises(ConfigError, match="rule must be one of"):
        TOAConfig(rule="greedy")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="prior_strength must be a finite number > 0"):
        TOAConfig(prior_strength=0)
    assert TOAConfig().rule == "bayes"
    assert set(TOAConfig().to_dict()) == {
        "rule", "prior_strength", "aggregate", "normalisation", "parallel_plays"
    }  # fmt: skip
    assert "rule" not in TOAConfig(rule="ucb").to_dict()  # the paper rule's record is unchanged


async def test_aggregate_merges_the_best_responses_and_can_be_switched_off() -> None:
    world = World.named("specialists")
    prompt = simulated_prompts(1)[0]
    tree = await TOASearch().run(prompt, SimulatedContext(world), budget=30, seed=0)
    check_tree(tree, budget=30)
    merged = [n for n in tree.responses() if n.action == "aggregate"]
    assert merged
    for node in merged:
        assert 2 <= len(node.parents) <= 3
        arm = tree.node(node.parent)
        assert (arm.action, arm.parent) == ("aggregate", node.parents[0])
        # the parents were the best responses scored before it, best first
        earlier = sorted(
            (n for n in tree.scored() if n.id < node.id),
            key=lambda n: (-(n.reward or 0.0), n.id),
        )
        assert list(node.parents) == [n.id for n in earlier[: len(node.parents)]]
    off = await TOASearch(TOAConfig(aggregate=False)).run(
        prompt, SimulatedContext(world), budget=30, seed=0
    )
    assert not [n for n in off.responses() if n.action == "aggregate"]
    assert "aggregate:agent_a" not in BayesState(
        prompt, AGENTS, config=TOAConfig(aggregate=False), budget=1, seed=0,
        templates=Templates.for_task("instruction"), prior=None,
    ).beliefs()  # fmt: skip


async def test_a_prior_that_merging_hurts_keeps_merges_rare() -> None:
    hurts = World.named("hurts")
    prior = await _learn(hurts, 30, 12)
    assert sum(c.plays for c in prior.aggregate.values()) > 0
    merges = Counter[str]()
    for prompt in simulated_prompts(20, seed=7):
        for label, given in (("warm", prior), ("cold", None)):
            ctx = SimulatedContext(hurts)
            tree = await TOASearch().run(prompt, ctx, budget=12, seed=0, prior=given)
            merges[label] += sum(1 for n in tree.responses() if n.action == "aggregate")
    assert merges["warm"] < 0.2 * 20 * 12
    assert merges["warm"] < 0.7 * merges["cold"]
