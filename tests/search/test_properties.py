"""Property tests over random worlds, settings and faults: budgets, statistics, round trips."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from tree_checks import check_tree, run

from toa.search import (
    MixtureOfAgents,
    MoAConfig,
    Normalisation,
    ParallelEnsemble,
    PRSSearch,
    RandomSampling,
    SearchTree,
    SequentialRefine,
    SingleAgentConfig,
    Strategy,
    Templates,
    TOAConfig,
    TOASearch,
    new_state,
    run_play,
)
from toa.testing.sim_context import SimulatedContext, simulated_prompts
from toa.testing.world import AgentProfile, World
from toa.types import Prompt

unit = st.floats(min_value=0.0, max_value=1.0)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    n_agents = draw(st.integers(min_value=1, max_value=4))
    n_families = draw(st.integers(min_value=1, max_value=3))

    def per_family(values: st.SearchStrategy[float]) -> tuple[float, ...]:
        return tuple(draw(values) for _ in range(n_families))

    agents = tuple(
        AgentProfile(
            f"agent_{i}",
            fresh_mean=per_family(unit),
            refine_gain=per_family(st.floats(min_value=-0.6, max_value=0.6)),
            fresh_std=draw(st.floats(min_value=0.0, max_value=0.3)),
            refine_std=draw(st.floats(min_value=0.0, max_value=0.2)),
            aggregate_gain=draw(st.floats(min_value=-0.2, max_value=0.4)),
        )
        for i in range(n_agents)
    )
    seed = draw(st.integers(min_value=0, max_value=10_000))
    return World(agents=agents, n_families=n_families, seed=seed)


@st.composite
def contexts(draw: st.DrawFn) -> SimulatedContext:
    world = draw(worlds())
    rate = st.sampled_from([0.0, 0.0, 0.1, 0.4, 1.0])
    names = world.agent_names
    out = draw(st.lists(st.sampled_from(names), max_size=len(names), unique=True))
    return SimulatedContext(
        world,
        generate_failure_rate=draw(rate),
        score_failure_rate=draw(rate),
        unavailable=out,
        seed=draw(st.integers(min_value=0, max_value=99)),
    )


@st.composite
def toa_configs(draw: st.DrawFn, n_agents: int, *, parallel: bool = True) -> TOAConfig:
    kind = draw(st.sampled_from(["rank", "minmax", "sigmoid"]))
    tau = draw(st.floats(min_value=0.05, max_value=2.0)) if kind == "sigmoid" else None
    width = draw(st.none() | st.integers(min_value=n_agents, max_value=n_agents + 20))
    if draw(st.booleans()):
        return TOAConfig(
            rule="bayes",
            prior_strength=draw(st.floats(min_value=0.5, max_value=64.0)),
            normalisation=Normalisation(kind=kind, tau=tau),  # type: ignore[arg-type]
            parallel_plays=draw(st.integers(min_value=1, max_value=4)) if parallel else 1,
        )
    return TOAConfig(
        rule="ucb",
        alpha=draw(st.floats(min_value=0.0, max_value=2.0)),
        width=width,
        width_fraction=draw(st.floats(min_value=0.05, max_value=1.0)),
        topk_child=draw(st.integers(min_value=1, max_value=3)),
        improvement_cap=draw(st.integers(min_value=1, max_value=5)),
        fresh_arms=draw(st.booleans()),
        normalisation=Normalisation(kind=kind, tau=tau),  # type: ignore[arg-type]
        parallel_plays=draw(st.integers(min_value=1, max_value=4)) if parallel else 1,
    )


@st.composite
def strategies(draw: st.DrawFn, agents: tuple[str, ...]) -> Strategy:
    name = draw(st.sampled_from(["toa", "random", "prs", "ensemble", "seq-refine", "moa"]))
    if name == "toa":
        return TOASearch(draw(toa_configs(len(agents))))
    if name in ("random", "prs"):
        config = SingleAgentConfig(agent=draw(st.sampled_from(agents)))
        return RandomSampling(config) if name == "random" else PRSSearch(config)
    if name == "moa":
        return MixtureOfAgents(
            MoAConfig(
                layers=draw(st.integers(min_value=1, max_value=4)),
                n_aggregate=draw(st.none() | st.integers(min_value=1, max_value=4)),
                aggregator_role=draw(st.sampled_from(["user", "system"])),
            )
        )
    return ParallelEnsemble() if name == "ensemble" else SequentialRefine()


@settings(max_examples=150, deadline=None)
@given(data=st.data(), budget=st.integers(min_value=1, max_value=40), seed=st.integers(0, 99))
def test_every_strategy_spends_its_budget_with_consistent_statistics(
    data: st.DataObject, budget: int, seed: int
) -> None:
    ctx = data.draw(contexts())
    strategy = data.draw(strategies(ctx.agents))
    prompt = simulated_prompts(1, seed=seed)[0]
    tree = run(strategy.run(prompt, ctx, budget=budget, seed=seed))
    check_tree(tree, budget=budget)
    assert len(ctx.calls) == budget
    assert tree.strategy == strategy.name
    if isinstance(strategy, TOASearch):
        assert all(len(c) == 1 for c in ctx.score_calls)  # TOA scores each play as it goes
    scored_ids = [i for call in ctx.score_calls for i in call]
    assert len(scored_ids) == len(set(scored_ids))  # each response scored once


async def _sequential(
    prompt: Prompt, ctx: SimulatedContext, config: TOAConfig, budget: int
) -> SearchTree:
    state = new_state(
        prompt, ctx.agents, config=config, budget=budget, seed=5,
        templates=Templates.for_task("instruction"),
    )  # fmt: skip
    while not state.done:
        await run_play(state, ctx, state.start_play(ctx.is_available))
    return state.tree


@settings(max_examples=60, deadline=None)
@given(data=st.data(), budget=st.integers(min_value=1, max_value=40))
def test_one_parallel_play_reproduces_the_sequential_search(
    data: st.DataObject, budget: int
) -> None:
    world = data.draw(worlds())
    config = data.draw(toa_configs(len(world.agent_names), parallel=False))
    prompt = simulated_prompts(1)[0]
    expected = run(_sequential(prompt, SimulatedContext(world), config, budget))
    tree = run(TOASearch(config).run(prompt, SimulatedContext(world), budget=budget, seed=5))
    assert tree.to_dict() == expected.to_dict()
