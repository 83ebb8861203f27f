"""`toa demo`: the embedded default run, and how its outcome is printed.

`toa.cli` registers `demo` on its app, after `fake-server`, so `toa --help` keeps its order.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from toa._cli_common import _fail, _print_report, _run_with_interrupt, console
from toa.errors import TOAError

if TYPE_CHECKING:
    from toa.demo import DemoOptions, DemoResult


def demo(
    problems: Annotated[
        int, typer.Option(help="How many of the 20 shipped math problems.", min=1, max=20)
    ] = 20,
    budget: Annotated[int, typer.Option(help="Generations per problem.", min=1)] = 8,
    strategy: Annotated[
        str, typer.Option(help="toa, random, prs, ensemble, seq-refine or moa.")
    ] = "toa",
    max_tokens: Annotated[int, typer.Option(help="Completion tokens per call.", min=16)] = 320,
    out: Annotated[
        Path | None,
        typer.Option(help="Run directory (default: runs/demo-STRATEGY-bBUDGET); resumable."),
    ] = None,
    simulated: Annotated[
        bool, typer.Option(help="Use the fake server's simulated agents instead of real models.")
    ] = False,
) -> None:
    """The embedded default: three real local models collaborate under TOA on math problems.

    Starts (or reuses) one llama.cpp server per bundled model (SmolLM2-135M, Qwen2.5-Coder-0.5B,
    Gemma-3-270M base), runs the strategy on problems with known answers scored by the `verify`
    reward, writes the run directory, exports SFT and DPO files, and prints who found the best
    answers. Running it again continues the same run. Stop the servers with `toa models down`.
    """
    from toa.demo import DemoOptions

    kind = "simulated" if simulated else "local"
    run_dir = out or Path(f"runs/demo-{kind}-{strategy}-b{budget}")
    options = DemoOptions(
        problems=problems,
        budget=budget,
        strategy=strategy,
        max_tokens=max_tokens,
        out=run_dir,
        simulated=simulated,
    )
    try:
        result = _run_demo(options)
    except TOAError as error:
        _fail(error)
    _print_demo(result, simulated=simulated)
    raise typer.Exit(result.report.exit_code)


def _run_demo(options: DemoOptions) -> DemoResult:
    from toa.demo import local_settings, run_demo, simulated_settings
    from toa.progress import RichProgress

    async def start(stop: asyncio.Event) -> DemoResult:
        if options.simulated:
            async with simulated_settings(options) as settings:
                return await run_demo(options, settings=settings, progress=progress, stop=stop)
        with console.status("verifying model weights and starting the local model servers..."):
            settings = await asyncio.to_thread(local_settings, options)
        for agent in settings.agents:
            console.print(f"agent {agent.name} ({agent.mode}) at {agent.base_urls[0]}")
        return await run_demo(options, settings=settings, progress=progress, stop=stop)

    with RichProgress(console, description="problems") as progress:
        return _run_with_interrupt(start)


def _print_demo(result: DemoResult, *, simulated: bool) -> None:
    _print_report(result.report)
    if not result.problems:
        return
    good = "reward >= 0.7" if simulated else "correct"
    table = Table(title=f"who found the answers ({result.problems} problems)")
    for column in ("agent", "samples", good, "failed", "first answer " + good, "best answer"):
        table.add_column(column, justify="left" if column == "agent" else "right")
    for name, t in sorted(result.agents.items()):
        first = f"{t.first_correct}/{t.first_answers}" if t.first_answers else "-"
        table.add_row(name, str(t.samples), str(t.correct), str(t.failed), first, str(t.best))
    console.print(table)
    single = max(
        (t.first_correct / t.first_answers for t in result.agents.values() if t.first_answers),
        default=0.0,
    )
    console.print(
        f"best answer {good}: {result.best_correct}/{result.problems} "
        f"({result.best_correct / result.problems:.0%}) with {result.report.compute.calls} calls; "
        f"the best single agent's first answer: {single:.0%}",
        highlight=False,
    )
    for label, path, export in (
        ("SFT", result.sft_path, result.sft),
        ("DPO", result.dpo_path, result.dpo),
    ):
        if path is not None and export is not None:
            console.print(f"{label} data: {path} ({export.rows} rows)", highlight=False)
    console.print(f"run directory: {result.run_dir} (results.jsonl, store.sqlite, manifest.json)")
