"""GSM8K with the three bundled local models: a `toa sweep` over every strategy.

Run:  .venv/bin/python benchmarks/gsm8k_local.py [--problems 30] [--calibration 10]
          [--budgets 4,8] [--strategies toa,ensemble,...] [--single-agent NAME]
          [--time-limit-s S] [--out DIR] [--in-flight 6]

This is a thin use of ``toa sweep`` (the one way to run a grid): it starts (or reuses) the local
model servers, writes the sweep's configuration and input into OUT, runs ``toa sweep`` as a user
would, and prints the cells as accuracies with one ``RESULT gsm8k_local key=value ...`` line.

Setting (issue 6). Agents: the three `toa.local` models (SmolLM2-135M chat, Qwen2.5-Coder-0.5B
chat, Gemma-3-270M base in completion mode), one llama.cpp server each, temperature 0.7,
max_tokens 256. Problems: the first N rows of ../shared/data/gsm8k/test.jsonl (skipped, exit 0,
when the file or the local models are missing). Reward: `verify` in gsm8k mode (1 when the
answer equals the gold number, else 0), so the mean best reward is the accuracy of the best
response, and with a verifier that knows the gold answer "the best response is correct" means
"some response in the tree is correct": it measures how well a strategy finds a right answer
within its budget. Templates: task "math". Seed 0. Every strategy with its default settings.

random and prs use one agent: by default the sweep's ``--single-agent auto``, which picks the
agent whose one fresh answer per problem was right most often on the next `--calibration` rows
of the test set (rows N+1 .. N+C), which are not evaluated; `--single-agent NAME` fixes it.

Everything else is the sweep's: each (strategy, budget) cell is a run directory
OUT/sweep/cells/<strategy>-b<budget>, cheapest first, all sharing one generation cache
(OUT/sweep/generations.sqlite), so a request another cell already made is not paid again and
rerunning a finished grid sends nothing. `--time-limit-s` (a SIGINT to the sweep: a clean stop),
Ctrl-C and SIGTERM stop cleanly; running the script again continues where it stopped, also
after the servers came back on other ports (the sweep compares what decides the generations, not
where they are sent). OUT/sweep/sweep.json, sweep.csv and the plots are there as for any sweep,
and ``toa report OUT/sweep`` makes the HTML report.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from toa.errors import TOAError
from toa.sweep import compare_line
from toa.types import SamplingParams

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl"
DEFAULT_OUT = ROOT / "benchmarks" / "out" / "gsm8k_local"
STRATEGIES = ("ensemble", "toa", "seq-refine", "moa", "random", "prs")
SINGLE = ("random", "prs")
MAX_TOKENS = 256
TEMPERATURE = 0.7
SEED = 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problems", type=int, default=30, help="first N problems (default 30)")
    p.add_argument(
        "--calibration", type=int, default=10,
        help="rows after the problems that choose random/prs's agent (default 10)",
    )  # fmt: skip
    p.add_argument("--budgets", default="4,8", help="comma-separated (default 4,8)")
    p.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated")
    p.add_argument("--single-agent", default=None, help="agent for random/prs (default: auto)")
    p.add_argument("--time-limit-s", type=float, default=None, help="stop cleanly after this")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    p.add_argument("--data", type=Path, default=DATA, help="GSM8K test JSONL")
    p.add_argument("--in-flight", type=int, default=6, help="prompts at once per cell (>= 3)")
    args = p.parse_args(argv)
    if args.problems < 1 or args.calibration < 1:
        p.error("--problems and --calibration must be >= 1")
    if args.in_flight < 3:
        p.error("--in-flight must be >= 3 (one prompt per server at least)")
    return args


def local_agents() -> list[dict[str, Any]] | None:
    """Start (or reuse) the local servers; their agent configurations (None: no models)."""
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


def _write_if_changed(path: Path, text: str) -> Path:
    """Rewrite only a changed file (the sweep compares its input's sha256 on a rerun)."""
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return path


def write_inputs(
    args: argparse.Namespace, agents: list[dict[str, Any]], calibrate: bool
) -> tuple[Path, Path]:
    """OUT/config.yaml and OUT/gsm8k.jsonl (the problems, then the calibration rows)."""
    rows = args.problems + (args.calibration if calibrate else 0)
    lines: list[str] = []
    with args.data.open(encoding="utf-8") as handle:
        for line in handle:
            if len(lines) == rows:
                break
            if line.strip():
                lines.append(line.rstrip("\n"))
    if len(lines) < rows:
        raise SystemExit(f"gsm8k_local: {args.data} holds {len(lines)} rows; {rows} are needed")
    from toa.local import config_yaml

    rest = {
        "reward": {"type": "verify", "mode": "gsm8k"},
        "strategy": {"name": "toa", "budget": 4},
        "templates": {"task": "math"},
        "runner": {"prompts_in_flight": args.in_flight},
        "seed": SEED,
    }
    text = config_yaml({"agents": agents}, header=False) + yaml.safe_dump(rest, sort_keys=False)
    args.out.mkdir(parents=True, exist_ok=True)
    config_path = _write_if_changed(args.out / "config.yaml", text)
    input_path = _write_if_changed(args.out / "gsm8k.jsonl", "\n".join(lines) + "\n")
    return config_path, input_path


def sweep_command(
    args: argparse.Namespace, config: Path, prompts: Path, calibrate: bool
) -> list[str]:
    command = [
        sys.executable, "-m", "toa", "sweep", "-c", str(config), "-i", str(prompts),
        "-o", str(args.out / "sweep"), "--strategies", args.strategies, "--budgets", args.budgets,
    ]  # fmt: skip
    if any(s.strip() in SINGLE for s in args.strategies.split(",")):
        if calibrate:
            command += ["--single-agent", "auto", "--calibration", str(args.calibration)]
        else:
            command += ["--single-agent", args.single_agent]
    return command


def run_sweep(command: list[str], time_limit_s: float | None) -> int:
    """Run `toa sweep` (its output goes to ours); a SIGINT at the time limit stops it cleanly,
    and so do Ctrl-C and SIGTERM sent to this script."""
    proc = subprocess.Popen(command)
    deadline = None if time_limit_s is None else time.monotonic() + time_limit_s

    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        while True:
            try:
                return proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                if deadline is not None and time.monotonic() >= deadline:
                    print(f"gsm8k_local: time limit {time_limit_s:.0f} s: stopping the sweep")
                    proc.send_signal(signal.SIGINT)
                    deadline = None
            except KeyboardInterrupt:  # the sweep got the same Ctrl-C: let it stop cleanly
                continue
    finally:
        signal.signal(signal.SIGTERM, previous)


def cached_generations(sweep_dir: Path) -> int:
    """Rows of the sweep's generation cache: every generation paid for so far."""
    path = sweep_dir / "generations.sqlite"
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


def _per(cell: dict[str, Any], key: str) -> float:
    return float(cell[key]) / cell["prompts"] if cell["prompts"] else 0.0


def print_table(cells: list[dict[str, Any]], problems: int) -> None:
    header = (
        f"{'cell':<14} {'done':>7} {'acc(best)':>9} {'calls/p':>8} {'tokens/p':>9} "
        f"{'FLOPs/p':>9} {'cached':>7}"
    )
    print(header)
    print("-" * len(header))
    for c in cells:
        acc = f"{c['mean_best_reward']:.3f}" if c["mean_best_reward"] is not None else "-"
        tokens = _per(c, "prompt_tokens") + _per(c, "completion_tokens")
        done = f"{c['done']}/{problems}"
        print(
            f"{c['name']:<14} {done:>7} {acc:>9} {_per(c, 'calls'):>8.2f} "
            f"{tokens:>9.0f} {_per(c, 'flops'):>9.3g} {c['cached_calls']:>7}"
        )


def result_line(doc: dict[str, Any], problems: int, complete: bool, extra: dict[str, str]) -> str:
    cells = doc["cells"]
    fields: dict[str, str] = {"problems": str(problems), "complete": "yes" if complete else "no"}
    for c in cells:
        key = c["name"].replace("-", "_")
        best = c["mean_best_reward"]
        fields[f"{key}_acc"] = f"{best:.3f}" if best is not None else "na"
        fields[f"{key}_done"] = str(c["done"])
    for budget in sorted({c["budget"] for c in cells}):
        here = [c for c in cells if c["budget"] == budget]
        others = [c for c in here if c["strategy"] != "toa" and c["mean_best_reward"] is not None]
        toa = next((c for c in here if c["strategy"] == "toa"), None)
        if others:
            best = max(others, key=lambda c: (c["mean_best_reward"], c["strategy"]))
            fields[f"best_other_b{budget}"] = best["strategy"]
            fields[f"best_other_b{budget}_acc"] = f"{best['mean_best_reward']:.3f}"
            if toa is not None and toa["mean_best_reward"] is not None:
                delta = toa["mean_best_reward"] - best["mean_best_reward"]
                fields[f"toa_minus_best_b{budget}"] = f"{delta:+.3f}"
                if best["flops"]:
                    fields[f"toa_vs_best_b{budget}_flops_ratio"] = (
                        f"{toa['flops'] / best['flops']:.3f}"
                    )
    fields.update(extra)
    return "RESULT gsm8k_local " + " ".join(f"{k}={v}" for k, v in fields.items())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.data.is_file():
        print(f"SKIP gsm8k_local: {args.data} is absent (the GSM8K test set is not here)")
        return 0
    started = time.monotonic()
    agents = local_agents()
    if agents is None:
        return 0
    calibrate = args.single_agent is None
    config, prompts = write_inputs(args, agents, calibrate)
    sweep_dir = args.out / "sweep"
    before = cached_generations(sweep_dir)
    command = sweep_command(args, config, prompts, calibrate)
    print("gsm8k_local:", " ".join(command[2:]), flush=True)
    limit_s = None
    if args.time_limit_s is not None:
        limit_s = max(0.0, args.time_limit_s - (time.monotonic() - started))
    code = run_sweep(command, limit_s)
    if not (sweep_dir / "sweep.json").is_file():
        print(f"gsm8k_local: the sweep wrote no sweep.json yet (exit {code}); run again")
        return 0 if code == 130 else code
    doc = json.loads((sweep_dir / "sweep.json").read_text(encoding="utf-8"))
    complete = code == 0 and all(c["done"] == args.problems for c in doc["cells"])
    print()
    print_table(doc["cells"], args.problems)
    for line in compare_line(doc["cells"]):
        print(line)
    single = doc.get("single_agent") or "na"
    if doc.get("calibration"):
        calibration = doc["calibration"]
        means = ", ".join(f"{a} {m:.3f}" for a, m in calibration["mean_reward"].items())
        print(f"random/prs agent: {single} (calibration on {calibration['prompts']} other "
              f"problems, one answer per agent: accuracy {means})")  # fmt: skip
    real = cached_generations(sweep_dir) - before
    print(
        f"wall time {time.monotonic() - started:.0f} s; generations paid in this invocation: {real}"
    )
    print(
        result_line(
            doc, args.problems, complete, {"single_agent": single, "real_generations": str(real)}
        )
    )
    return 0 if code in (0, 130) else code


if __name__ == "__main__":
    sys.exit(main())
