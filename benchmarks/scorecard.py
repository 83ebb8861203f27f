"""The scorecard: does TOA beat every simpler strategy, and its peer, at equal compute?

Run:  .venv/bin/python benchmarks/scorecard.py [--part sim|real|all] [--prompts 200]
          [--out benchmarks/out/scorecard] [--seed 0]            (real part: see gsm8k_local.py)

Simulated part (issue 10). Worlds `helps`, `hurts`, `dominant` and `specialists` of
`toa.testing.world` (fixed in advance, not changed here), three agents, the in-memory
`SimulatedContext` (reward = the hidden quality in [0, 1]), budgets N = 8, 16, 32, 64 generations
per prompt, 200 evaluation prompts (balanced families, seed 0). Common random numbers
(``sample_key="request"``): the k-th identical request of a prompt draws the same sample in every
row, as the engine's per-request seeds make real servers do, so rows differ by what they ask,
not by sampling luck.

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
missing (delete the file to start over).

Real part (``--part real``). The three bundled local models (`toa.local`: SmolLM2-135M chat,
Qwen2.5-Coder-0.5B chat, Gemma-3-270M base), one llama.cpp server each, temperature 0.7,
``--max-tokens`` (default 256), templates task 'math', seed 0. GSM8K test rows that no other
benchmark here uses: rows 200-219 are the calibration slice (never evaluated), rows 220 and up
the evaluated problems (``--problems``, default 10). The single agent of random/prs is the agent
whose fresh answers were right most often on the calibration slice (ensemble, 2 per agent,
`verify`), chosen once and kept in OUT/real/single_agent.json; TOA gets the same calibration
run's evidence as the starting point of its online prior (OUT/real/calibration_priors.json,
`prior: {source: online, path: ...}`). Two rewards steer the search:
``verify`` (an oracle: it knows the gold answer) and ``judge`` (label-free: the bundled
Qwen2.5-Coder-1.5B judge, P(yes), which never sees the gold answer; needs ``make
install-judge``). Accuracy is always judged afterwards against the gold answer: is the answer
each run chose (its best response) right. Every (reward, strategy, budget) cell is a run
directory OUT/real/<reward>/<strategy>_b<budget>; all share one generation cache
(OUT/real/generations.sqlite), so a request made by any cell (same agent, messages, sampling and
sample index) is paid once, whichever reward steered it, and a rerun sends nothing. Cells run
cheapest budget first, verify before judge. ``--time-limit-s``, Ctrl-C and SIGTERM stop cleanly; run
again to continue. Goals: TOA's accuracy >= every baseline's at budgets 8 and 16 with both
rewards, within one problem.

Ends with ``RESULT scorecard ...`` (simulated part) and ``RESULT scorecard_real ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
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
from search_efficiency import choose_single_agent

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "out" / "scorecard"
WORLDS = ("helps", "hurts", "dominant", "specialists")
BUDGETS = (8, 16, 32, 64)
BASELINES = ("random", "prs", "ensemble", "seq-refine", "moa")
TOLERANCE = 0.005


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
    ctx = SimulatedContext(world, sample_key="request")
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


# ------------------------------------------------------------------------------ real models

GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl"
CALIBRATION_ROWS = (200, 220)
EVAL_FIRST_ROW = 220
REAL_STRATEGIES = ("toa", "random", "prs", "ensemble", "seq-refine", "moa")
SINGLE = ("random", "prs")
REWARDS = ("verify", "judge")


def _slice(source: Path, start: int, stop: int, target: Path) -> Path:
    lines = source.read_text(encoding="utf-8").splitlines()[start:stop]
    text = "".join(line + "\n" for line in lines)
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")
    return target


def _real_settings(
    sections: dict[str, Any], reward: str, strategy: dict[str, Any], out: Path, max_tokens: int
) -> Any:
    from toa.config import parse_config

    agents = [
        {**a, "sampling": {**a.get("sampling", {}), "max_tokens": max_tokens, "temperature": 0.7}}
        for a in sections["agents"]
    ]
    return parse_config(
        {
            "agents": agents,
            "reward": {"type": "verify", "mode": "gsm8k"}
            if reward == "verify"
            else sections["reward"],
            "strategy": strategy,
            "templates": {"task": "math"},
            "runner": {"prompts_in_flight": 6, "cache": str(out / "generations.sqlite")},
            "seed": 0,
        },
        source=f"scorecard {reward} {strategy['name']} b{strategy['budget']}",
    )


async def _correct(result: dict[str, Any], verify: Any) -> bool:
    """Is the answer a run chose right, by the gold answer (whatever reward steered it)?"""
    best = result.get("best")
    if not best or best.get("response") is None:
        return False
    prompt = Prompt.from_text(result["id"], result["prompt"], **result.get("extra", {}))
    (score,) = await verify.score(prompt, [best["response"]])
    return bool(score == 1.0)


async def _cell_row(run_dir: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"done": 0, "correct": 0, "calls": 0, "tokens": 0, "flops": 0.0}
    row.update({"reward_calls": 0, "cached": 0, "wall_s": 0.0})
    path = run_dir / "results.jsonl"
    if not path.exists():
        return row
    from toa.rewards.verify import VerifyReward

    verify = VerifyReward(mode="gsm8k")
    for line in path.read_text(encoding="utf-8").splitlines():
        result = json.loads(line)
        if result["status"] != "done":
            continue
        c = result["compute"]
        row["done"] += 1
        row["correct"] += await _correct(result, verify)
        row["calls"] += c["calls"]
        row["tokens"] += c["prompt_tokens"] + c["completion_tokens"]
        row["flops"] += c["flops"]
        row["reward_calls"] += c["reward_calls"]
        row["cached"] += c.get("cached_calls", 0)
        row["wall_s"] += c["wall_s"]
    return row


async def real(args: argparse.Namespace) -> int:
    """The real-model part (module docstring); returns the exit code."""
    from toa.engine.runner import run
    from toa.errors import TOAError

    if not GSM8K.is_file():
        print(f"SKIP scorecard real: {GSM8K} is absent")
        return 0
    try:
        from toa.local import DEFAULT_JUDGE, DEFAULT_MODELS, config_sections, start_servers

        models = [*DEFAULT_MODELS, *([DEFAULT_JUDGE] if "judge" in args.rewards else [])]
        servers = await asyncio.to_thread(start_servers, models)
        sections = config_sections(servers, judge="judge" in args.rewards)
    except (ImportError, TOAError) as exc:
        print(f"SKIP scorecard real: the local models cannot run here: {exc}")
        return 0
    out = args.out / "real"
    out.mkdir(parents=True, exist_ok=True)
    calibration = _slice(GSM8K, *CALIBRATION_ROWS, out / "calibration.jsonl")
    evaluation = _slice(GSM8K, EVAL_FIRST_ROW, EVAL_FIRST_ROW + args.problems, out / "eval.jsonl")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.time_limit_s is not None:
        loop.call_later(args.time_limit_s, stop.set)

    choice = out / "single_agent.json"
    if not choice.exists() or not (out / "calibration_priors.json").exists():
        settings = _real_settings(
            sections, "verify", {"name": "ensemble", "budget": 6}, out, args.max_tokens
        )
        report = await run(settings, input_path=calibration, run_dir=out / "calibration", stop=stop)
        if report.interrupted:
            return 130
        right: dict[str, list[int]] = {}
        for line in (out / "calibration" / "results.jsonl").read_text().splitlines():
            for sample in json.loads(line)["samples"]:
                hits = right.setdefault(sample["agent"], [0, 0])
                hits[0] += sample["reward"] == 1.0
                hits[1] += 1
        agent = max(right, key=lambda a: right[a][0] / right[a][1])
        why = ", ".join(f"{a} {h[0]}/{h[1]}" for a, h in right.items())
        choice.write_text(json.dumps({"agent": agent, "why": why}) + "\n", encoding="utf-8")
    seed_prior = out / "calibration_priors.json"
    if not seed_prior.exists():
        from toa.engine.runner import learned_prior
        from toa.store.run_store import RunStore

        names = tuple(a["name"] for a in sections["agents"])
        with RunStore.open_readonly(out / "calibration" / "store.sqlite") as store:
            seed_prior.write_text(learned_prior(store, names).to_json() + "\n", encoding="utf-8")
    single = json.loads(choice.read_text(encoding="utf-8"))
    print(
        f"single agent for random/prs: {single['agent']} (right fresh answers on the "
        f"calibration slice: {single['why']})",
        flush=True,
    )

    cells = [
        (reward, name, budget)
        for budget in args.budgets
        for reward in args.rewards
        for name in args.strategies
    ]
    for reward, name, budget in cells:
        if stop.is_set():
            break
        strategy: dict[str, Any] = {"name": name, "budget": budget}
        if name in SINGLE:
            strategy["agent"] = single["agent"]
        if name == "toa":  # the calibration run's evidence, as random/prs get its choice
            strategy["prior"] = {"source": "online", "path": str(seed_prior.resolve())}
        settings = _real_settings(sections, reward, strategy, out, args.max_tokens)
        started = time.perf_counter()
        report = await run(
            settings, input_path=evaluation, run_dir=out / reward / f"{name}_b{budget}", stop=stop
        )
        print(
            f"[{reward} {name} b{budget}] {report.finished} run now, {report.already_done} "
            f"already done, {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    table_rows = {
        (reward, name, budget): await _cell_row(out / reward / f"{name}_b{budget}")
        for reward, name, budget in cells
    }
    print_real(table_rows, args.problems, single["agent"])
    return 130 if stop.is_set() else 0


def print_real(rows: dict[tuple[str, str, int], dict[str, Any]], problems: int, agent: str) -> None:
    print(
        f"\nreal models, GSM8K rows {EVAL_FIRST_ROW}-{EVAL_FIRST_ROW + problems - 1}; "
        f"random/prs agent {agent}; accuracy = the chosen answer is right (gold answer)"
    )
    print(
        f"{'reward':<7} {'cell':<14} {'done':>6} {'acc':>6} {'calls/p':>8} {'tokens/p':>9} "
        f"{'FLOPs/p':>9} {'rewards/p':>9} {'cached':>7}"
    )
    fields = [f"problems={problems}"]
    for (reward, name, budget), r in rows.items():
        n = r["done"] or 1
        acc = r["correct"] / r["done"] if r["done"] else float("nan")
        print(
            f"{reward:<7} {name + '_b' + str(budget):<14} {r['done']:>3}/{problems:<2} "
            f"{acc:>6.3f} {r['calls'] / n:>8.2f} {r['tokens'] / n:>9.0f} "
            f"{r['flops'] / n:>9.3g} {r['reward_calls'] / n:>9.2f} {r['cached']:>7}"
        )
        fields.append(f"{reward}_{name.replace('-', '_')}_b{budget}_acc={acc:.3f}")
    print()
    for reward in REWARDS:
        for budget in (8, 16):
            cells = {n: r for (rw, n, b), r in rows.items() if rw == reward and b == budget}
            if "toa" not in cells or not all(r["done"] == problems for r in cells.values()):
                continue
            best = max((n for n in cells if n != "toa"), key=lambda n: cells[n]["correct"])
            toa, other = cells["toa"]["correct"], cells[best]["correct"]
            ok = toa >= other - 1
            print(
                f"{'PASS' if ok else 'FAIL'} {reward} b{budget}: toa {toa}/{problems} right, "
                f"best baseline {best} {other}/{problems} (goal: within one problem)"
            )
            fields.append(f"{reward}_b{budget}_toa_minus_best={toa - other}")
    print("RESULT scorecard_real " + " ".join(fields))


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("sim", "real", "all"), default="sim")
    parser.add_argument("--prompts", type=int, default=200, help="simulated prompts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--problems", type=int, default=10, help="real: evaluated GSM8K rows")
    parser.add_argument("--budgets", default="4,8,16", help="real: comma-separated budgets")
    parser.add_argument("--rewards", default="verify,judge", help="real: verify and/or judge")
    parser.add_argument("--strategies", default=",".join(REAL_STRATEGIES), help="real")
    parser.add_argument("--max-tokens", type=int, default=256, help="real: per generation")
    parser.add_argument("--time-limit-s", type=float, default=None, help="real: stop after")
    args = parser.parse_args()
    args.budgets = [int(b) for b in args.budgets.split(",")]
    args.rewards = [r for r in args.rewards.split(",") if r]
    args.strategies = [x for x in args.strategies.split(",") if x]
    if set(args.rewards) - set(REWARDS) or set(args.strategies) - set(REAL_STRATEGIES):
        parser.error(f"rewards: {list(REWARDS)}; strategies: {list(REAL_STRATEGIES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    code = 0
    if args.part in ("sim", "all"):
        started = time.perf_counter()
        data = await simulated(args.out, args.prompts, args.seed)
        print_tables(data)
        met = goals(data)
        print()
        for text, ok in met:
            print(f"{'PASS' if ok else 'FAIL'} {text}")
        print(result_line(data, met, time.perf_counter() - started))
    if args.part in ("real", "all"):
        code = await real(args)
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
