"""What every `toa` command shares: the console, error exit, Ctrl-C handling, the run report."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from toa.errors import TOAError

if TYPE_CHECKING:
    import asyncio

    from toa.engine.runner import RunReport

T = TypeVar("T")

console = Console(stderr=True)


def print_wide(renderable: Any, *, min_width: int = 160) -> None:
    """Print a wide table whole: on a terminal at its width, in a log file or a pipe (80
    columns by default, which would cut its cells) at least `min_width` columns."""
    if console.is_terminal or console.width >= min_width:
        console.print(renderable)
        return
    saved = console.width
    console.width = min_width
    try:
        console.print(renderable)
    finally:
        console.width = saved


def setup_logging(verbose: int) -> None:
    """Log to the console: warnings by default, -v info, -vv debug."""
    from rich.logging import RichHandler

    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
        force=True,
    )


def fail(error: TOAError) -> NoReturn:
    console.print(f"[red]error[/]: {error}", highlight=False)
    raise typer.Exit(2)


def run_with_interrupt(start: Callable[[asyncio.Event], Coroutine[Any, Any, T]]) -> T:
    """Run the engine; the first Ctrl-C stops it cleanly (resumable), a second one hard."""
    import asyncio
    import signal

    async def main() -> T:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        hits = [0]

        def on_sigint() -> None:
            hits[0] += 1
            if hits[0] > 1:
                os._exit(130)  # the store commits every finished call: nothing is lost
            console.print(
                "\n[yellow]stopping[/]: no new requests; the ones in flight are being finished "
                "and stored (Ctrl-C again to stop at once)"
            )
            stop.set()

        loop.add_signal_handler(signal.SIGINT, on_sigint)
        loop.add_signal_handler(signal.SIGTERM, on_sigint)
        try:
            return await start(stop)
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)

    return asyncio.run(main())


def print_report(report: RunReport) -> None:
    c = report.compute
    table = Table(title=f"run {report.run_dir}", show_header=False)
    rows = [
        ("prompts", f"{report.finished} finished, {report.already_done} already done, "
                    f"{report.failed} failed, {report.bad_rows} bad rows, of {report.total}"),
        ("calls", f"{c.calls:,} ({c.replayed_calls:,} replayed from the store, "
                  f"{c.cached_calls:,} from the cache, {c.failed_calls:,} failed)"),
        ("tokens", f"{c.prompt_tokens:,} prompt + {c.completion_tokens:,} completion"),
        ("rewards", f"{c.reward_calls:,} ({c.failed_rewards:,} failed)"),
    ]  # fmt: skip
    if c.flops:
        rows.append(("FLOPs", f"{c.flops:.3g}"))
    if c.cost_usd:
        rows.append(("cost", f"${c.cost_usd:.4f}"))
    rows.append(("wall time", f"{report.wall_s:.1f} s"))
    rows.append(("results", str(report.run_dir / "results.jsonl")))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    if report.interrupted:
        console.print(f"interrupted: continue with [bold]toa resume {report.run_dir}[/]")
    elif report.bad_rows or report.failed:
        console.print("[yellow]some rows or prompts failed[/]: see the messages above")
