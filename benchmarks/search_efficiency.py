"""Search efficiency: TOA against the five baselines on three simulated worlds fixed in advance.

Run:  .venv/bin/python benchmarks/search_efficiency.py  [--prompts 200] [--seed 0]

Setting (issue 3). Three agents (agent_a, agent_b, agent_c), 200 prompts with balanced families
(`simulated_prompts`), budgets of 8, 16, 32 and 64 generations per prompt, the in-memory
`SimulatedContext` (reward = the hidden quality in [0, 1]). The worlds are `World.named(...)`,
documented in `toa.testing.world` and not changed here:

* (a) helps: refinement helps; the best fresh agent differs by family (a, b, c for families
  0, 1, 2); agent_a is the best refiner.
* (b) hurts: the same fresh answers, but a rewrite is on average worse than its parent.
* (c) dominant: agent_c is the best fresh agent and the best refiner in every family.

Every world also gives aggregation (two or more parent answers in one request, which only MoA
sends) the same +15%-of-the-gap gain; see the notes the script prints.

Strategies: toa (the default `TOAConfig`: the same settings in all three worlds), toa-p4 (the same
with parallel_plays=4), random and prs (single agent: the agent with the best mean fresh reward on
30 held-out calibration prompts of that world, 8 samples per agent; chosen once per world, never
per prompt), ensemble, seq-refine, moa (4 layers, all responses aggregated).

Metrics per strategy and budget: mean over prompts of the best reward in the tree, and of the
mean of its 10 best rewards (all of them when fewer than 10 were scored).

Goals (issue 3), on the best reward, TOA = toa (sequential), baselines = random, prs, ensemble,
seq-refine, moa:
* helps: TOA >= every baseline at every budget, and TOA at B/2 >= the best baseline at B for
  B in {32, 64};
* hurts, dominant: TOA >= 98% of the best baseline at every budget.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass

from toa.search import (
    MixtureOfAgents,
    ParallelEnsemble,
    PRSSearch,
    RandomSampling,
    SearchTree,
    SequentialRefine,
    SingleAgentConfig,
    Strategy,
    TOAConfig,
    TOASearch,
)
from toa.testing.sim_context import SimulatedContext, simulated_prompts
from toa.testing.world import World
from toa.types import Prompt

WORLDS = ("helps", "hurts", "dominant")
BUDGETS = (8, 16, 32, 64)
BASELINES = ("random", "prs", "ensemble", "seq-refine", "moa")
TOP_N = 10
CALIBRATION_PROMPTS = 30
CALIBRATION_SAMPLES = 8
TOLERANCE = 0.02


@dataclass(frozen=True)
class Cell:
    """Mean best reward and mean top-10 reward of one strategy at one budget."""

    best: float
    top: float


async def choose_single_agent(world: World, seed: int) -> str:
    """The agent with the best mean fresh reward on held-out calibration prompts."""
    ctx = SimulatedContext(world)
    prompts = simulated_prompts(CALIBRATION_PROMPTS, seed=seed + 10_000)
    means = {}
    for agent in ctx.agents:
        rewards = []
        for prompt in prompts:
            for node_id in range(CALIBRATION_SAMPLES):
                completion = await ctx.generate(agent, prompt.messages, node_id=node_id)
                (score,) = await ctx.score(prompt, [completion.text], node_ids=[node_id])
                assert isinstance(score, float)
                rewards.append(score)
        means[agent] = statistics.fmean(rewards)
    return max(means, key=lambda a: means[a])


def strategies(single_agent: str) -> dict[str, Strategy]:
    """Every strategy of the benchmark; TOA uses the library's defaults."""
    single = SingleAgentConfig(agent=single_agent)
    return {
        "toa": TOASearch(TOAConfig()),
        "toa-p4": TOASearch(TOAConfig(parallel_plays=4)),
        "random": RandomSampling(single),
        "prs": PRSSearch(single),
        "ensemble": ParallelEnsemble(),
        "seq-refine": SequentialRefine(),
        "moa": MixtureOfAgents(),
    }


def top_mean(tree: SearchTree, n: int = TOP_N) -> float:
    """Mean of the `n` best rewards of a tree (of all, when fewer were scored)."""
    rewards = [node.reward for node in tree.ranked()[:n] if node.reward is not None]
    return statistics.fmean(rewards)


async def measure(
    strategy: Strategy, world: World, prompts: list[Prompt], budget: int, seed: int
) -> Cell:
    """Run one strategy on every prompt at one budget."""
    ctx = SimulatedContext(world)
    best, top = [], []
    for prompt in prompts:
        tree = await strategy.run(prompt, ctx, budget=budget, seed=seed)
        assert tree.generations == budget, (strategy.name, tree.generations)
        node = tree.best()
        if node is None or node.reward is None:
            raise RuntimeError(f"{strategy.name}: no scored response for {prompt.id}")
        best.append(node.reward)
        top.append(top_mean(tree))
    return Cell(statistics.fmean(best), statistics.fmean(top))


async def run_world(
    name: str, prompts: list[Prompt], seed: int
) -> tuple[str, dict[str, dict[int, Cell]]]:
    """The whole table of one world, and the single agent chosen for it."""
    world = World.named(name, seed=seed)
    agent = await choose_single_agent(world, seed)
    table: dict[str, dict[int, Cell]] = {}
    for label, strategy in strategies(agent).items():
        table[label] = {b: await measure(strategy, world, prompts, b, seed) for b in BUDGETS}
    return agent, table


def print_table(name: str, agent: str, table: dict[str, dict[int, Cell]]) -> None:
    """One world's table: best / top-10 per strategy and budget."""
    print(f"\nworld {name} (random/prs agent: {agent}); cells: mean best / mean top-{TOP_N}")
    print(f"{'strategy':<11}" + "".join(f"{'N=' + str(b):>16}" for b in BUDGETS))
    for label, row in table.items():
        cells = "".join(f"{row[b].best:>9.3f} /{row[b].top:>5.3f}" for b in BUDGETS)
        print(f"{label:<11}{cells}")


def best_baseline(table: dict[str, dict[int, Cell]], budget: int) -> tuple[str, float]:
    """The baseline with the highest mean best reward at `budget`."""
    name = max(BASELINES, key=lambda s: table[s][budget].best)
    return name, table[name][budget].best


def check_goals(tables: dict[str, dict[str, dict[int, Cell]]]) -> list[tuple[str, bool]]:
    """Every goal of the issue as (description, met)."""
    goals: list[tuple[str, bool]] = []
    helps = tables["helps"]
    for b in BUDGETS:
        name, value = best_baseline(helps, b)
        toa = helps["toa"][b].best
        goals.append(
            (f"helps N={b}: toa {toa:.3f} >= best baseline {name} {value:.3f}", toa >= value)
        )
    for b in (32, 64):
        name, value = best_baseline(helps, b)
        toa = helps["toa"][b // 2].best
        text = f"helps: toa at N={b // 2} {toa:.3f} >= best baseline at N={b} {name} {value:.3f}"
        goals.append((text, toa >= value))
    for world in ("hurts", "dominant"):
        for b in BUDGETS:
            name, value = best_baseline(tables[world], b)
            toa = tables[world]["toa"][b].best
            text = (
                f"{world} N={b}: toa {toa:.3f} within {TOLERANCE:.0%} of best baseline "
                f"{name} {value:.3f} ({toa / value - 1:+.1%})"
            )
            goals.append((text, toa >= (1 - TOLERANCE) * value))
    return goals


def result_line(tables: dict[str, dict[str, dict[int, Cell]]], goals: list[tuple[str, bool]],
                wall_s: float, n_prompts: int) -> str:  # fmt: skip
    """The machine-readable summary."""
    parts = [f"prompts={n_prompts}"]
    for world, table in tables.items():
        name, value = best_baseline(table, 64)
        toa = table["toa"][64].best
        parts += [
            f"{world}_toa64={toa:.4f}",
            f"{world}_best_baseline64={name}:{value:.4f}",
            f"{world}_toa_vs_best64={toa / value:.4f}",
            f"{world}_toa_p4_vs_toa64={table['toa-p4'][64].best / toa:.4f}",
        ]
    met = sum(ok for _, ok in goals)
    parts += [f"goals_met={met}/{len(goals)}", f"wall_s={wall_s:.1f}"]
    return "RESULT search_efficiency " + " ".join(parts)


def aggregation_note(seed: int) -> str:
    """What aggregation does in the 'hurts' world, measured, to explain MoA's numbers."""
    world = World.named("hurts", seed=seed)
    prompt = simulated_prompts(1, seed=seed)[0]
    parent, q = world.respond("agent_a", prompt.text, 0)
    refine = [world.respond("agent_a", f"{prompt.text}\n{parent}", k)[1] - q for k in range(300)]
    pair = f"{prompt.text}\n{parent}\n{parent}"
    merge = [world.respond("agent_a", pair, k)[1] - q for k in range(300)]
    return (
        f"note: in 'hurts', from one parent of quality {q:.3f}, agent_a's refinement moves quality "
        f"by {statistics.fmean(refine):+.3f} on average and an aggregation of two copies by "
        f"{statistics.fmean(merge):+.3f}: only MoA aggregates."
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    prompts = simulated_prompts(args.prompts, seed=args.seed)
    tables: dict[str, dict[str, dict[int, Cell]]] = {}
    for name in WORLDS:
        agent, tables[name] = await run_world(name, prompts, args.seed)
        print_table(name, agent, tables[name])
    print()
    print(aggregation_note(args.seed))
    goals = check_goals(tables)
    print()
    for text, ok in goals:
        print(f"{'PASS' if ok else 'FAIL'} {text}")
    print(result_line(tables, goals, time.perf_counter() - start, len(prompts)))


if __name__ == "__main__":
    asyncio.run(main())
