"""`toa demo`: the embedded default run, and how its outcome is printed.

`toa.cli` registers `demo` on its app.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from toa.cli.common import console, fail, print_report, run_with_interrupt
from toa.errors import TOAError
from toa.search.names import STRATEGY_NAMES

if TYPE_CHECKING:
    import asyncio

    from toa.demo import DemoOptions, DemoResult, RunTotals
    from toa.engine.runner import ProgressSink

DEFAULTS = {"problems": 10, "budget": 4, "max_tokens": 256, "calibration_problems": 2}


def demo(
    problems: Annotated[
        int,
        typer.Option(help="How many of the 20 shipped math problems to evaluate.", min=1, max=20),
    ] = DEFAULTS["problems"],
    budget: Annotated[
        int, typer.Option(help="Generations per problem, for the strategy and best-of-N.", min=1)
    ] = DEFAULTS["budget"],
    strategy: Annotated[str, typer.Option(help=f"One of: {', '.join(STRATEGY_NAMES)}.")] = "toa",
    max_tokens: Annotated[int, typer.Option(help="Completion tokens per call.", min=16)] = DEFAULTS[
        "max_tokens"
    ],
    calibration_problems: Annotated[
        int,
        typer.Option(
            help="How many of the 6 shipped calibration problems (never evaluated) choose the "
            "strongest single agent (2 fresh samples per agent on each).",
            min=1,
            max=6,
        ),
    ] = DEFAULTS["calibration_problems"],
    out: Annotated[
        Path | None,
        typer.Option(help="Output directory (default: runs/demo-KIND-STRATEGY-bBUDGET)."),
    ] = None,
    simulated: Annotated[
        bool, typer.Option(help="Use the fake server's simulated agents instead of real models.")
    ] = False,
) -> None:
    """The embedded default: three real local models under TOA on math problems, against best-of-N.

    Starts (or reuses) one llama.cpp server per bundled model (SmolLM2-135M, Qwen2.5-Coder-0.5B,
    Gemma-3-270M base); chooses the strongest single agent on calibration problems that are not
    evaluated; runs the strategy and then best-of-N on that agent, at the same budget, on the same
    problems with known answers scored by the `verify` reward, sharing one generation cache;
    exports SFT and DPO files and prints who found the best answers and which of the two won.
    Running it again continues the same runs. Stop the servers with `toa models down`.
    """
    from toa.demo import DemoOptions

    kind = "simulated" if simulated else "local"
    options = DemoOptions(
        problems=problems,
        budget=budget,
        strategy=strategy,
        max_tokens=max_tokens,
        out=out or Path(f"runs/demo-{kind}-{strategy}-b{budget}"),
        simulated=simulated,
        calibration_problems=calibration_problems,
    )
    try:
        result = _run_demo(options)
    except TOAError as error:
        fail(error)
    _print_demo(result, simulated=simulated)
    raise typer.Exit(result.exit_code)


class _Phases:
    """One rich progress display per phase of the demo (calibration, strategy, best-of-N)."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()

    def __call__(self, phase: str) -> ProgressSink:
        from toa.cli.progress import RichProgress

        self._stack.close()
        return self._stack.enter_context(RichProgress(console, description=phase))

    def close(self) -> None:
        self._stack.close()


def _run_demo(options: DemoOptions) -> DemoResult:
    import asyncio

    from toa.demo import local_settings, run_demo, simulated_settings

    async def start(stop: asyncio.Event) -> DemoResult:
        if options.simulated:
            async with simulated_settings(options) as settings:
                return await run_demo(options, settings=settings, progress=phases, stop=stop)
        with console.status("verifying model weights and starting the local model servers..."):
            settings = await asyncio.to_thread(local_settings, options)
        for agent in settings.agents:
            console.print(f"agent {agent.name} ({agent.mode}) at {agent.base_urls[0]}")
        return await run_demo(options, settings=settings, progress=phases, stop=stop)

    phases = _Phases()
    try:
        return run_with_interrupt(start)
    finally:
        phases.close()


def _print_demo(result: DemoResult, *, simulated: bool) -> None:
    good = "reward >= 0.7" if simulated else "correct"
    choice = result.choice
    if choice is None:
        if result.calibration_report is not None:
            print_report(result.calibration_report)
        console.print(
            "calibration did not finish: no strongest agent chosen yet; run the same command "
            "again to continue",
            highlight=False,
        )
        return
    print_report(result.report)
    if result.problems:
        title = f"who found the answers under {result.strategy} ({result.problems} problems)"
        table = Table(title=title)
        for column in ("agent", "samples", good, "failed", "first answer " + good, "best answer"):
            table.add_column(column, justify="left" if column == "agent" else "right")
        for name, t in sorted(result.agents.items()):
            first = f"{t.first_correct}/{t.first_answers}" if t.first_answers else "-"
            table.add_row(name, str(t.samples), str(t.correct), str(t.failed), first, str(t.best))
        console.print(table)
    scores = ", ".join(
        f"{name} {s.correct}/{s.samples} {good} (mean reward {s.mean_reward:.2f})"
        for name, s in choice.scores.items()
    )
    how = "chosen by an earlier run" if choice.reused else "chosen now"
    console.print(
        f"strongest single agent: [bold]{choice.agent}[/] ({how}, stored in {choice.path}): "
        f"the highest mean reward on {len(choice.problems)} calibration problems that are not "
        f"evaluated ({', '.join(choice.problems)}), {choice.samples} fresh samples per agent "
        f"on each: {scores}",
        highlight=False,
    )
    _print_comparison(result, good)
    for label, path, export in (
        ("SFT", result.sft_path, result.sft),
        ("DPO", result.dpo_path, result.dpo),
    ):
        if path is not None and export is not None:
            console.print(f"{label} data: {path} ({export.rows} rows)", highlight=False)
    console.print(
        f"output directory: {result.run_dir.parent} ({result.strategy}/ and best-of-n/: "
        "results.jsonl, store.sqlite, manifest.json; cache.sqlite shared by all runs)",
        highlight=False,
    )


def _print_comparison(result: DemoResult, good: str) -> None:
    assert result.choice is not None
    rows: list[tuple[str, RunTotals]] = []
    if result.totals is not None:
        rows.append((f"{result.strategy} (all agents)", result.totals))
    if result.baseline is not None:
        rows.append((f"best-of-{result.budget} on {result.choice.agent}", result.baseline))
    table = Table(title=f"same budget ({result.budget} generations per problem), same problems")
    columns = ("strategy", "problems", f"best answer {good}", "calls", "from the cache", "tokens")
    for column in columns:
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for label, t in rows:
        share = f"{len(t.correct)}/{len(t.done)}" + (
            f" ({len(t.correct) / len(t.done):.0%})" if t.done else ""
        )
        table.add_row(
            label,
            str(len(t.done)),
            share,
            f"{t.calls:,}",
            f"{t.cached_calls:,}",
            f"{t.tokens:,}",
        )
    console.print(table)
    verdict = result.verdict()
    if verdict is None:
        console.print(
            f"no verdict yet: both runs must finish all {result.evaluated} problems; run the same "
            "command again to continue",
            highlight=False,
        )
    else:
        console.print(verdict, highlight=False, style="bold")
