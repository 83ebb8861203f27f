"""A rich progress display for runs: prompts done/total, ETA, calls/s, tokens, failures, cost."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from toa.engine.context import Compute
from toa.errors import InputError

__all__ = ["RichProgress"]


class RichProgress:
    """`toa.engine.runner.ProgressSink` drawn with rich. Use as a context manager."""

    def __init__(self, console: Console, *, description: str = "prompts") -> None:
        self._console = console
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[stats]}"),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None
        self._description = description
        self._started = time.perf_counter()
        self._calls = 0
        self._tokens = 0
        self._failed_calls = 0
        self._failed_rewards = 0
        self._failed_prompts = 0
        self._bad_rows = 0
        self._cost = 0.0

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def started(self, *, total: int, already_done: int) -> None:
        self._started = time.perf_counter()
        if already_done:
            self._console.print(f"resuming: {already_done} of {total} prompts already done")
        self._task = self._progress.add_task(
            self._description, total=total, completed=already_done, stats=self._stats()
        )

    def prompt_finished(self, prompt_id: str, compute: Compute, *, ok: bool) -> None:
        self._calls += compute.calls - compute.replayed_calls - compute.cached_calls
        self._tokens += compute.prompt_tokens + compute.completion_tokens
        self._failed_calls += compute.failed_calls
        self._failed_rewards += compute.failed_rewards
        self._failed_prompts += not ok
        self._cost += compute.cost_usd
        if self._task is not None:
            self._progress.update(self._task, advance=1, stats=self._stats())

    def bad_row(self, error: InputError) -> None:
        self._bad_rows += 1
        self._console.print(f"[yellow]bad row[/]: {error}", highlight=False)
        if self._task is not None:
            self._progress.update(self._task, stats=self._stats())

    def _stats(self) -> str:
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        parts = [f"{self._calls / elapsed:.1f} calls/s", f"{self._tokens:,} tok"]
        failures = self._failed_calls + self._failed_rewards + self._failed_prompts
        if failures:
            parts.append(f"[red]{failures} failures[/]")
        if self._bad_rows:
            parts.append(f"[yellow]{self._bad_rows} bad rows[/]")
        if self._cost:
            parts.append(f"${self._cost:.4f}")
        return " · ".join(parts)
