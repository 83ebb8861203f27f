"""The scorecard: does TOA beat every simpler strategy, and its peer, at equal compute?

Run:  .venv/bin/python benchmarks/scorecard.py [--part sim|real|all] [--prompts 200]
          [--out benchmarks/out/scorecard] [--seed 0]            (real part: see gsm8k_local.py)

Simulated part (issue 10). Worlds `helps`, `hurts`, `dominant` and `specialists` of
`toa.testing.world` (fixed in advance, not changed here), three agents, the in-memory
`SimulatedContext` (reward = the hidden quality in [0, 1]), budgets N = 8, 16, 32, 64 generations
per prompt, 200 evaluation prompts (balanced families, seed 0).

Rows:
* toa: the library's default (`TOAConfig()`: rule 'bayes') with the online prior, exactly what
  `toa run` does with one prompt in flight: the prompts run one after another and each starts
  from the evidence of those before it in the same cell (the first prompt starts cold).
* toa-cold: the same search, every prompt cold (no prior), to show what the prior is worth.
* toa-ucb: the paper's UCB rule (`TOAConfig(rule="ucb")`), as the library shipped it before.
* random, prs: single agent, the agent with the best mean fresh reward on 30 calibration prompts
  of that world (another seed, never evaluated), 8 samples per agent, chosen once per world.
* ensemble, seq-refine, moa: the paper's multi-agent baselines, default settings.
* ab-mcts-a: SakanaAI TreeQuest's AB-MCTS-A on the same calls (`benchmarks/peers.py`; needs the
  `peers` extra, else the row is left out and the goals say so).

Metric: mean over prompts of the best reward in the tree (every row spends exactly N
generations; every response is scored once). Nothing is tuned on these prompts: the settings are
the library defaults. Goals: TOA (row toa) >= every other row in every cell (within 0.5%), and in
`helps` and `specialists` TOA at B/2 >= the best baseline (random, prs, ensemble, seq-refine, moa)
at B, for B = 32, 64.

Resumable: each finished cell is kept in OUT/sim.json; running again computes only what is
missing (delete the file to start over). Ends with ``RESULT scorecard ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from toa.search import (
    MixtureOfAgents,
    ParallelEnsemble,
    Prior,
    PRSSearch,
    RandomSampling,
    SequentialRefine,
    SingleAgentConfig,
    Strategy,
    TOAConfig,
    TOASearch,
    evidence_from_tree,
)
from toa.testing.sim_context import SimulatedContext, simulated_prompts
from toa.testing.world import World
from toa.types import Prompt

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # benchmarks/ is not a package: found through sys.path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "out" / "scorecard"
WORLDS = ("helps", "hurts", "dominant", "specialists")
BUDGETS = (8, 16, 32, 64)
BASELINES = ("random", "prs", "ensemble", "seq-refine", "moa")
CALIBRATION_PROMPTS = 30
CALIBRATION_SAMPLES = 8
TOLERANCE = 0.005


async def choose_single_agent(world: World, seed: int) -> str:
    """The agent with the best mean fresh reward on calibration prompts (never evaluated)."""
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


def rows(single_agent: str) -> dict[str, tuple[Strategy, bool]]:
    """Every row: its strategy and whether it learns a prior across prompts."""
    single = SingleAgentConfig(agent=single_agent)
    out: dict[str, tuple[Strategy, bool]] = {
        "toa": (TOASearch(), True),
        "toa-cold": (TOASearch(), False),
        "toa-ucb": (TOASearch(TOAConfig(rule="ucb")), False),
        "random": (RandomSampling(single), False),
        "prs": (PRSSearch(single), False),
        "ensemble": (ParallelEnsemble(), False),
        "seq-refine": (SequentialRefine(), False),
        "moa": (MixtureOfAgents(), False),
    }
    if peers.available():
        out["ab-mcts-a"] = (peers.ABMCTSA(), False)
    return out


async def measure(
    strategy: Strategy, learns: bool, world: World, prompts: list[Prompt], budget: int, seed: int
) -> float:
    """Mean best reward of one row at one budget (prompts one after another)."""
    ctx = SimulatedContext(world)
    prior = Prior.empty(ctx.agents) if learns else None
    best = []
    for prompt in prompts:
        tree = await strategy.run(prompt, ctx, budget=budget, seed=seed, prior=prior)
        if tree.generations != budget:
            raise RuntimeError(f"{strategy.name}: {tree.generations} generations, not {budget}")
        if prior is not None:
            prior = prior + evidence_from_tree(tree)
        node = tree.best()
        if node is None or node.reward is None:
            raise RuntimeError(f"{strategy.name}: no scored response for {prompt.id}")
        best.append(node.reward)
    return statistics.fmean(best)


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _save(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


async def simulated(out: Path, n_prompts: int, seed: int) -> dict[str, Any]:
    """Every cell of the simulated part (resumable through OUT/sim.json)."""
    path = out / "sim.json"
    data = _load(path)
    key = f"prompts={n_prompts} seed={seed}"
    if data.get("setting") != key:
        data = {"setting": key, "agents": {}, "cells": {}}
    prompts = simulated_prompts(n_prompts, seed=seed)
    for name in WORLDS:
        world = World.named(name, seed=seed)
        if name not in data["agents"]:
            data["agents"][name] = await choose_single_agent(world, seed)
            _save(path, data)
        for label, (strategy, learns) in rows(data["agents"][name]).items():
            for budget in BUDGETS:
                cell = f"{name}/{label}/{budget}"
                if cell in data["cells"]:
                    continue
                started = time.perf_counter()
                value = await measure(strategy, learns, world, prompts, budget, seed)
                data["cells"][cell] = {"best": value, "wall_s": time.perf_counter() - started}
                _save(path, data)
                print(f"  {cell}: {value:.4f}", flush=True)
    return data


def table(data: dict[str, Any], world: str) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for cell, value in data["cells"].items():
        w, label, budget = cell.split("/")
        if w == world:
            out.setdefault(label, {})[int(budget)] = value["best"]
    return out


def print_tables(data: dict[str, Any]) -> None:
    for world in WORLDS:
        t = table(data, world)
        print(f"\nworld {world} (random/prs agent: {data['agents'][world]}); mean best reward")
        print(f"{'row':<11}" + "".join(f"{'N=' + str(b):>9}" for b in BUDGETS))
        for label, cells in t.items():
            print(f"{label:<11}" + "".join(f"{cells.get(b, float('nan')):>9.3f}" for b in BUDGETS))


def goals(data: dict[str, Any]) -> list[tuple[str, bool]]:
    """Every goal of the simulated part as (description, met)."""
    out: list[tuple[str, bool]] = []
    for world in WORLDS:
        t = table(data, world)
        others = [r for r in t if r not in ("toa", "toa-cold", "toa-ucb")]
        for b in BUDGETS:
            name = max(others, key=lambda r: t[r][b])
            toa, best = t["toa"][b], t[name][b]
            text = (
                f"{world} N={b}: toa {toa:.3f} >= best other {name} {best:.3f} within "
                f"{TOLERANCE:.1%} ({toa / best - 1:+.1%})"
            )
            out.append((text, toa >= (1 - TOLERANCE) * best))
        if world in ("helps", "specialists"):
            for b in (32, 64):
                name = max(BASELINES, key=lambda r: t[r][b])
                toa, best = t["toa"][b // 2], t[name][b]
                text = (
                    f"{world}: toa at N={b // 2} {toa:.3f} >= best baseline at N={b} "
                    f"{name} {best:.3f} ({toa / best - 1:+.1%})"
                )
                out.append((text, toa >= best))
    if not peers.available():
        out.append(("ab-mcts-a row present (install the `peers` extra)", False))
    return out


def result_line(data: dict[str, Any], met: list[tuple[str, bool]], wall_s: float) -> str:
    parts = []
    for world in WORLDS:
        t = table(data, world)
        others = [r for r in t if r not in ("toa", "toa-cold", "toa-ucb")]
        for b in (8, 64):
            name = max(others, key=lambda r: t[r][b])
            parts.append(f"{world}_toa_vs_best{b}={t['toa'][b] / t[name][b]:.4f}")
        if "ab-mcts-a" in t:
            parts.append(f"{world}_toa_vs_abmcts16={t['toa'][16] / t['ab-mcts-a'][16]:.4f}")
    ok = sum(m for _, m in met)
    parts += [f"sim_goals_met={ok}/{len(met)}", f"wall_s={wall_s:.1f}"]
    return "RESULT scorecard " + " ".join(parts)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("sim", "real", "all"), default="sim")
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = await simulated(args.out, args.prompts, args.seed)
    print_tables(data)
    met = goals(data)
    print()
    for text, ok in met:
        print(f"{'PASS' if ok else 'FAIL'} {text}")
    print(result_line(data, met, time.perf_counter() - started))


if __name__ == "__main__":
    asyncio.run(main())
