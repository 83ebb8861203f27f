"""GSM8K with the three bundled local models: every strategy at budgets 4 and 8, two at 16.

Run:  .venv/bin/python benchmarks/gsm8k_local.py [--problems 30] [--budgets 4,8,16]
          [--strategies toa,ensemble,...] [--time-limit-s S] [--out DIR] [--in-flight 6]

Setting (issue 6). Agents: the three `toa.local` models (SmolLM2-135M chat, Qwen2.5-Coder-0.5B
chat, Gemma-3-270M base in completion mode), one llama.cpp server each, temperature 0.7,
max_tokens 256. Problems: the first N rows of ../shared/data/gsm8k/test.jsonl (skipped, exit 0,
when the file or the local models are missing). Reward: `verify` in gsm8k mode (1 when the
answer equals the gold number, else 0). Templates: task "math". Seed 0. Every strategy with its
default settings; random and prs use the "strongest single agent": the agent whose first fresh
answers were right most often in the ensemble run at budget 4 (each agent's first answer to every
problem; ties go to the first agent in the table), chosen once, after that run is complete, and
kept in OUT/strongest_agent.json so later invocations use the same agent (`--single-agent`
overrides the choice). It is chosen on the same problems, an optimistic choice for random/prs.

Each (strategy, budget) is its own run directory OUT/<strategy>_b<budget>, and all of them share
one generation cache (OUT/generations.sqlite): a request that another cell already made (same
agent, messages, sampling settings and sample index; see `toa.engine.context`) is not sent again,
so ensemble's samples are random's, TOA's fresh answers are ensemble's, and rerunning a finished
grid sends nothing. ensemble_b4 runs first; then the other multi-agent cells run one after
another (each keeps the three servers busy with `--in-flight` prompts at once), cheapest and most
informative first (budget 4, then 8, then 16), while random and prs, which use one server only,
run one after another beside them. `--time-limit-s`, Ctrl-C and SIGTERM stop cleanly; running the
script again continues where it stopped (finished prompts are kept, unfinished ones replay their
stored calls).

Output: one table row per cell (problems done, accuracy of the best response, mean calls,
prompt+completion tokens and FLOPs per problem, cached calls), then
``RESULT gsm8k_local key=value ...``. With the verify reward (which knows the gold answer) "the
best response is correct" means "some response in the tree is correct": it measures how well a
strategy finds a right answer within its budget, given a perfect verifier.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toa.config import RunSettings, parse_config
from toa.demo import tally
from toa.engine.context import Compute
from toa.engine.runner import run
from toa.errors import InputError, TOAError
from toa.store.run_store import RunStore
from toa.types import SamplingParams

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl"
DEFAULT_OUT = ROOT / "benchmarks" / "out" / "gsm8k_local"
CACHE_NAME = "generations.sqlite"
CHOICE_NAME = "strongest_agent.json"
ORDER = ("ensemble", "toa", "seq-refine", "moa", "random", "prs")
SINGLE = ("random", "prs")
LARGE_BUDGET_STRATEGIES = ("toa", "ensemble")  # the only ones above budget 8
MAX_TOKENS = 256
TEMPERATURE = 0.7
SEED = 0


@dataclass(frozen=True)
class Cell:
    """One (strategy, budget) of the grid."""

    strategy: str
    budget: int

    @property
    def name(self) -> str:
        return f"{self.strategy}_b{self.budget}"

    @property
    def key(self) -> str:
        return self.name.replace("-", "_")


@dataclass
class Row:
    """What the table shows for one cell."""

    cell: Cell
    agent: str = ""
    done: int = 0
    correct: int = 0
    calls: int = 0
    cached: int = 0
    tokens: int = 0
    flops: float = 0.0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.done if self.done else None

    def mean(self, total: float) -> float:
        return total / self.done if self.done else 0.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problems", type=int, default=30, help="first N problems (default 30)")
    p.add_argument("--budgets", default="4,8,16", help="comma-separated (default 4,8,16)")
    p.add_argument("--strategies", default=",".join(ORDER), help="comma-separated (default all)")
    p.add_argument("--time-limit-s", type=float, default=None, help="stop cleanly after this")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    p.add_argument("--data", type=Path, default=DATA, help="GSM8K test JSONL")
    p.add_argument("--in-flight", type=int, default=6, help="prompts at once per run (>= 3)")
    p.add_argument("--single-agent", default=None, help="agent for random/prs (default: chosen)")
    args = p.parse_args(argv)
    args.budgets = sorted({int(b) for b in args.budgets.split(",") if b.strip()})
    args.strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = sorted(set(args.strategies) - set(ORDER))
    if unknown:
        p.error(f"unknown strategies {unknown}; choose from {list(ORDER)}")
    if args.in_flight < 3:
        p.error("--in-flight must be >= 3 (one prompt per server at least)")
    return args


def grid(strategies: list[str], budgets: list[int]) -> list[Cell]:
    """Cells in run order: by budget, then ensemble first (it decides the single agent)."""
    return [
        Cell(s, b)
        for b in budgets
        for s in ORDER
        if s in strategies and (b <= 8 or s in LARGE_BUDGET_STRATEGIES)
    ]


# ----------------------------------------------------------------------------- settings


def local_agents() -> list[dict[str, Any]] | None:
    """Start (or reuse) the three local servers; their agent configurations (None: no models)."""
    try:
        from toa.local import config_sections, start_servers

        servers = start_servers()
    except (ImportError, TOAError) as exc:
        print(f"SKIP gsm8k_local: the local models cannot run here: {exc}")
        return None
    sampling = SamplingParams(temperature=TEMPERATURE, max_tokens=MAX_TOKENS)
    agents: list[dict[str, Any]] = config_sections(servers, judge=False, sampling=sampling)[
        "agents"
    ]
    return agents


def settings_for(
    cell: Cell, agents: list[dict[str, Any]], single: str | None, out: Path, in_flight: int
) -> RunSettings:
    strategy: dict[str, Any] = {"name": cell.strategy, "budget": cell.budget}
    if cell.strategy in SINGLE:
        strategy["agent"] = single
    return parse_config(
        {
            "agents": agents,
            "reward": {"type": "verify", "mode": "gsm8k"},
            "strategy": strategy,
            "templates": {"task": "math"},
            "runner": {"prompts_in_flight": in_flight, "cache": str(out / CACHE_NAME)},
            "seed": SEED,
        },
        source=f"gsm8k_local {cell.name}",
    )


# -------------------------------------------------------------------------- the single agent


def choose_single_agent(out: Path, problems: int) -> tuple[str, str] | None:
    """(agent, why) from OUT/strongest_agent.json, else from a complete ensemble_b4 run."""
    path = out / CHOICE_NAME
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        return str(saved["agent"]), str(saved["why"])
    run_dir = out / Cell("ensemble", 4).name
    if not (run_dir / "store.sqlite").exists():
        return None
    done, _, tallies = tally(run_dir)
    if done < problems:
        return None
    rates = {
        name: t.first_correct / t.first_answers for name, t in tallies.items() if t.first_answers
    }
    agent = max(rates, key=lambda name: rates[name])  # max keeps the first of equal rates
    shown = ", ".join(f"{name} {rate:.0%}" for name, rate in rates.items())
    why = f"best first-answer accuracy in ensemble_b4 over {done} problems ({shown})"
    path.write_text(json.dumps({"agent": agent, "why": why}, indent=1) + "\n", encoding="utf-8")
    return agent, why


# ------------------------------------------------------------------------------------ running


class Progress:
    """A `ProgressSink` that prints one line per finished problem."""

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.total = self.done = 0
        self.started_s = time.monotonic()

    def started(self, *, total: int, already_done: int) -> None:
        self.total, self.done = total, already_done
        print(f"[{self.cell.name}] {already_done}/{total} already done", flush=True)

    def prompt_finished(self, prompt_id: str, compute: Compute, *, ok: bool) -> None:
        self.done += 1
        sent = compute.calls - compute.replayed_calls - compute.cached_calls
        elapsed = time.monotonic() - self.started_s
        print(
            f"[{self.cell.name}] {self.done}/{self.total} problem {prompt_id}: "
            f"{'ok' if ok else 'FAILED'}, {sent} sent, {compute.cached_calls} cached, "
            f"{elapsed:.0f} s",
            flush=True,
        )

    def bad_row(self, error: InputError) -> None:
        print(f"[{self.cell.name}] bad row: {error}", flush=True)


async def run_cell(
    cell: Cell, agents: list[dict[str, Any]], args: argparse.Namespace, stop: asyncio.Event
) -> bool:
    """Run one cell until it is done or `stop` is set; True when it finished every problem."""
    single = None
    if cell.strategy in SINGLE:
        chosen = single_agent(args)
        if chosen is None:
            print(f"[{cell.name}] skipped: ensemble_b4 must be complete to choose the agent")
            return False
        single = chosen[0]
    report = await run(
        settings_for(cell, agents, single, args.out, args.in_flight),
        input_path=args.data,
        run_dir=args.out / cell.name,
        limit=args.problems,
        progress=Progress(cell),
        stop=stop,
    )
    if report.interrupted:
        print(f"[{cell.name}] stopped: rerun to continue")
    return not (report.interrupted or report.failed)


async def run_chain(
    cells: list[Cell], agents: list[dict[str, Any]], args: argparse.Namespace, stop: asyncio.Event
) -> bool:
    """Cells one after another; True when every one finished every problem."""
    complete = True
    for cell in cells:
        if stop.is_set():
            print(f"[{cell.name}] not started: stopped")
            return False
        complete = await run_cell(cell, agents, args, stop) and complete
    return complete


async def run_grid(
    cells: list[Cell], agents: list[dict[str, Any]], args: argparse.Namespace, limit_s: float | None
) -> bool:
    """Run the grid; True when every cell finished every problem.

    ensemble_b4 runs first (it decides the single agent); then two chains run side by side: the
    other multi-agent cells one after another, and random and prs one after another (a
    single-agent cell keeps only its agent's server busy, so it shares the machine with cells that
    use all three). The order within a chain does not change what is generated: the cache makes
    a request shared by two cells cost once, whichever comes first. The time limit, Ctrl-C and
    SIGTERM stop cleanly.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if limit_s is not None:
        loop.call_later(limit_s, stop.set)
    first = [c for c in cells if c == Cell("ensemble", 4)]
    multi = [c for c in cells if c.strategy not in SINGLE and c not in first]
    single = [c for c in cells if c.strategy in SINGLE]
    done = await run_chain(first, agents, args, stop)
    chains = await asyncio.gather(
        run_chain(multi, agents, args, stop), run_chain(single, agents, args, stop)
    )
    return done and all(chains)


def single_agent(args: argparse.Namespace) -> tuple[str, str] | None:
    if args.single_agent is not None:
        return args.single_agent, "given with --single-agent"
    return choose_single_agent(args.out, args.problems)


# ------------------------------------------------------------------------------------ reporting


def first_ids(path: Path, n: int) -> set[str]:
    ids: set[str] = set()
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if len(ids) >= n:
                break
            if line.strip():
                ids.add(str(json.loads(line)["id"]))
    return ids


def read_row(cell: Cell, out: Path, ids: set[str]) -> Row:
    row = Row(cell)
    db = out / cell.name / "store.sqlite"
    if not db.exists():
        return row
    with RunStore.open_readonly(db) as store:
        for prompt_id, status, line in store.iter_results():
            if status != "done" or prompt_id not in ids:
                continue
            result = json.loads(line)
            compute = result["compute"]
            best = result.get("best")
            row.done += 1
            row.correct += best is not None and (best.get("reward") or 0.0) >= 1.0
            row.calls += compute["calls"]
            row.cached += compute.get("cached_calls", 0)
            row.tokens += compute["prompt_tokens"] + compute["completion_tokens"]
            row.flops += compute["flops"]
    manifest = out / cell.name / "manifest.json"
    if cell.strategy in SINGLE and manifest.exists():
        row.agent = json.loads(manifest.read_text(encoding="utf-8"))["config"]["strategy"]["agent"]
    return row


def print_table(rows: list[Row], problems: int) -> None:
    header = (
        f"{'cell':<14} {'agent':<18} {'done':>7} {'acc(best)':>9} {'calls/p':>8} "
        f"{'tokens/p':>9} {'FLOPs/p':>9} {'cached':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        acc = f"{r.accuracy:.3f}" if r.accuracy is not None else "-"
        print(
            f"{r.cell.name:<14} {r.agent or '-':<18} {f'{r.done}/{problems}':>7} {acc:>9} "
            f"{r.mean(r.calls):>8.2f} {r.mean(r.tokens):>9.0f} {r.mean(r.flops):>9.3g} "
            f"{r.cached:>7}"
        )


def result_line(rows: list[Row], problems: int, complete: bool, extra: dict[str, str]) -> str:
    fields: dict[str, str] = {"problems": str(problems), "complete": "yes" if complete else "no"}
    by_name = {r.cell.name: r for r in rows}
    for r in rows:
        fields[f"{r.cell.key}_acc"] = f"{r.accuracy:.3f}" if r.accuracy is not None else "na"
        fields[f"{r.cell.key}_done"] = str(r.done)
    for budget in sorted({r.cell.budget for r in rows}):
        baselines = [
            r for r in rows if r.cell.budget == budget and r.cell.strategy != "toa" and r.done
        ]
        if baselines:
            best = max(baselines, key=lambda r: r.accuracy or 0.0)
            fields[f"best_baseline_b{budget}"] = best.cell.key
            fields[f"best_baseline_b{budget}_acc"] = f"{best.accuracy or 0.0:.3f}"
        toa, ensemble = by_name.get(f"toa_b{budget}"), by_name.get(f"ensemble_b{budget}")
        if toa and ensemble and toa.done and ensemble.done and ensemble.flops:
            ratio = toa.mean(toa.flops) / ensemble.mean(ensemble.flops)
            fields[f"toa_vs_ensemble_b{budget}_flops_ratio"] = f"{ratio:.3f}"
    fields.update(extra)
    return "RESULT gsm8k_local " + " ".join(f"{k}={v}" for k, v in fields.items())


def cached_generations(out: Path) -> int:
    """Generations in the shared cache file (0 when it does not exist yet)."""
    path = out / CACHE_NAME
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path.as_uri() + "?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0])


# ------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.data.is_file():
        print(f"SKIP gsm8k_local: {args.data} is absent (the GSM8K test set is not here)")
        return 0
    started = time.monotonic()
    agents = local_agents()
    if agents is None:
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    cells = grid(args.strategies, args.budgets)
    before = cached_generations(args.out)
    print(f"gsm8k_local: {args.problems} problems, cells {[c.name for c in cells]}")
    print(f"results in {args.out}, shared generation cache {args.out / CACHE_NAME}")
    limit_s = None
    if args.time_limit_s is not None:
        limit_s = max(0.0, args.time_limit_s - (time.monotonic() - started))
    complete = asyncio.run(run_grid(cells, agents, args, limit_s))
    wall_s = time.monotonic() - started
    rows = [read_row(c, args.out, first_ids(args.data, args.problems)) for c in cells]
    complete = complete and all(r.done == args.problems for r in rows)
    chosen = single_agent(args)
    print()
    print_table(rows, args.problems)
    print()
    if chosen is not None:
        print(f"single agent for random/prs: {chosen[0]} ({chosen[1]})")
    real = cached_generations(args.out) - before
    print(f"wall time {wall_s:.0f} s; real generations made in this invocation: {real}")
    extra = {"single_agent": chosen[0] if chosen else "na", "real_generations": str(real)}
    print(result_line(rows, args.problems, complete, extra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
