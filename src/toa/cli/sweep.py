"""`toa sweep` (strategies x budgets on the same prompts, one shared cache) and `toa eval`
(score a run's chosen answers apart from its reward)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from toa.cli.common import console, fail, print_wide, run_with_interrupt
from toa.errors import TOAError
from toa.search.names import STRATEGY_NAMES

if TYPE_CHECKING:
    from toa.engine.runner import ProgressSink

_EVAL_HELP = (
    "Also score each prompt's best answer (and top 10) apart from the reward: verify (needs "
    "gold_answer; reports accuracy), chrf or bleu (need reference), reward (the run's own), "
    "judge:AGENT (a yes/no judge through the configured agent AGENT), config (the "
    "configuration's `eval:` section, any reward kind: judge, http, ...; the default when the "
    "configuration has one; judge: that section, which must be a judge). Kept in each run's "
    "eval.json: the same results are not scored twice."
)


class _SweepProgress:
    """One view of the whole sweep: before each cell, a line with the cells done, the current
    cell, the calls, tokens and cost so far and an ETA (remaining budget x prompts at the pace so
    far); within a cell, its own progress (`RichProgress`: a bar, or plain lines in a log)."""

    def __init__(self, budgets: dict[str, int]) -> None:
        self._budgets = budgets  # cell description prefix -> budget, in run order
        self._started = time.perf_counter()
        self._done_units = 0
        self._cells_done = 0
        self._calls = self._tokens = 0
        self._cost = 0.0
        self._prompts = 0

    @contextmanager
    def cell(self, description: str) -> Iterator[ProgressSink]:
        from toa.cli.progress import RichProgress

        console.print(self._line(description), highlight=False, soft_wrap=True)
        with RichProgress(console, description=description) as progress:
            yield progress
        budget = self._budget(description)
        if budget:  # a cell, not the calibration
            self._prompts = self._prompts or progress.total
            self._cells_done += 1
            self._done_units += budget * progress.total
        self._calls += progress.calls
        self._tokens += progress.tokens
        self._cost += progress.cost_usd

    def _budget(self, description: str) -> int:
        return next(
            (b for name, b in self._budgets.items() if description.startswith(f"{name} (")), 0
        )

    def _line(self, description: str) -> str:
        from toa.cli.progress import clock

        elapsed = time.perf_counter() - self._started
        parts = [
            f"sweep: cell {description}",
            f"{self._cells_done} of {len(self._budgets)} cells done",
            f"{self._calls:,} calls",
            f"{self._tokens:,} tok",
        ]
        if self._cost:
            parts.append(f"${self._cost:.4f}")
        if self._done_units and self._prompts:
            left = sum(self._budgets.values()) * self._prompts - self._done_units
            parts.append(f"ETA ~{clock(max(left, 0) * elapsed / self._done_units)}")
        return " | ".join(parts)


def sweep_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="The sweep's YAML configuration.")],
    input: Annotated[
        Path, typer.Option("--input", "-i", help="Prompts: .jsonl, .json, .csv or .parquet.")
    ],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Sweep directory (created; continued if it exists)."),
    ],
    strategies: Annotated[
        str, typer.Option(help=f"Comma-separated strategies: {', '.join(STRATEGY_NAMES)}.")
    ] = "toa,ensemble,random",
    budgets: Annotated[str, typer.Option(help="Comma-separated budgets, e.g. 4,8,16.")] = "4,8,16",
    limit: Annotated[int | None, typer.Option(help="Only the first K good prompts.", min=1)] = None,
    prompt_field: Annotated[
        str | None,
        typer.Option(help="Field holding the prompt (default: instruction, then prompt)."),
    ] = None,
    single_agent: Annotated[
        str | None,
        typer.Option(
            "--single-agent",
            help="The agent random / prs cells use (default: the configuration's "
            "strategy.agent, or its only agent); auto: chosen on --calibration prompts.",
        ),
    ] = None,
    calibration: Annotated[
        int | None,
        typer.Option(
            help="With --single-agent auto: the last N prompts of the input choose the agent "
            "(best mean reward of one answer per agent) and are left out of the sweep.",
            min=1,
        ),
    ] = None,
    eval_kind: Annotated[str | None, typer.Option("--eval", help=_EVAL_HELP)] = None,
) -> None:
    """Compare strategies x budgets on the same prompts, paying once for what cells share.

    Every (strategy, budget) cell is a run directory OUTPUT/cells/<strategy>-b<budget>, cheapest
    first, all sharing the generation cache OUTPUT/generations.sqlite; OUTPUT/sweep.json and
    sweep.csv hold each cell's numbers. Run the same command again to continue after a stop.

    Exit code: 0 all good; 1 some prompts failed or rows were bad; 2 a usage or configuration
    error; 130 interrupted (run the same command again to continue).
    """
    from toa.sweep import SweepPlan, parse_budgets, parse_strategies, prepare_sweep, run_sweep

    try:
        plan = SweepPlan(
            sweep_dir=output,
            config_path=config,
            input_path=input,
            strategies=parse_strategies(strategies),
            budgets=parse_budgets(budgets),
            limit=limit,
            prompt_field=prompt_field,
            single_agent=single_agent,
            calibration=calibration,
        )
        prepared = prepare_sweep(plan, eval_kind=eval_kind)
        if prepared.added:
            console.print(f"adding cells: {', '.join(prepared.added)}")
        if prepared.plan.single_agent not in (None, "auto") and any(
            c.strategy in ("random", "prs") for c in prepared.plan.cells
        ):
            console.print(f"random / prs use the agent {prepared.plan.single_agent}")
        tracker = _SweepProgress(
            {f"{c.strategy} b{c.budget}": c.budget for c in prepared.plan.cells}
        )
        report = run_with_interrupt(
            lambda stop: run_sweep(prepared, progress=tracker.cell, stop=stop)
        )
    except TOAError as error:
        fail(error)
    from toa.sweep import compare_line

    if report.calibration is not None:
        c = report.calibration
        means = ", ".join(f"{a} {m:.3f}" for a, m in c["mean_reward"].items())
        console.print(
            f"calibration on {c['prompts']} prompts (one answer per agent; mean reward {means}): "
            f"random / prs use {c['agent']}",
            highlight=False,
        )
    _print_cells(report.cells, title=f"sweep {output}")
    for line in compare_line(report.cells):
        console.print(line, highlight=False)
    if report.interrupted:
        console.print("interrupted: run the same `toa sweep` command again to continue")
    else:
        console.print(f"results: {output / 'sweep.json'}, {output / 'sweep.csv'}")
    for path in report.plots:
        console.print(f"plot: {path}")
    raise typer.Exit(report.exit_code)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _print_cells(cells: list[dict[str, Any]], *, title: str) -> None:
    from toa.cli.progress import clock

    table = Table(title=title)
    with_eval = any("eval" in c for c in cells)
    columns = ["cell", "prompts", "best", f"top-{cells[0]['top_k'] if cells else 10}", "calls",
               "sent", "cached", "tokens", "cost", "wall", "best by agent"]  # fmt: skip
    if with_eval:
        columns.insert(4, "eval")
    for column in columns:
        table.add_column(column)
    for c in cells:
        share = ", ".join(f"{a} {s:.0%}" for a, s in c["best_agent_share"].items())
        row = [
            c["name"], _fmt(c["prompts"]), _fmt(c["mean_best_reward"]),
            _fmt(c["mean_topk_reward"]), _fmt(c["calls"]), _fmt(c["calls_sent"]),
            _fmt(c["cached_calls"]), _fmt(c["prompt_tokens"] + c["completion_tokens"]),
            f"${c['cost_usd']:.4f}", clock(c["wall_s"]) if c.get("wall_s") is not None else "-",
            share,
        ]  # fmt: skip
        if with_eval:
            row.insert(4, _eval_text(c.get("eval")))
        table.add_row(*row)
    print_wide(table)


def _eval_text(block: dict[str, Any] | None) -> str:
    if not block:
        return "-"
    if block.get("accuracy") is not None:
        return f"{block['kind']} acc {block['accuracy']:.3f}"
    return f"{block['kind']} {_fmt(block.get('mean_best'))}"


def eval_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (e.g. a sweep's cell).")],
    eval_kind: Annotated[str, typer.Option("--eval", help=_EVAL_HELP)],
) -> None:
    """Score a run's chosen best answers (and top 10) apart from its reward; print the numbers
    and write RUN_DIR/eval.json."""
    import asyncio

    from toa.sweep import EVAL_NAME, evaluate_run

    try:
        block = asyncio.run(evaluate_run(run_dir, eval_kind))
    except TOAError as error:
        fail(error)
    table = Table(title=f"eval {run_dir} ({eval_kind})", show_header=False)
    for key, value in block.items():
        if key not in ("results_sha256", "evaluator"):
            table.add_row(key, _fmt(value))
    console.print(table)
    console.print(f"written: {run_dir / EVAL_NAME}")
