"""A progress display for runs: prompts done/total, ETA, calls/s, tokens, failures, cost.

On a terminal it is a live rich bar. When the output is not a terminal (a log file, CI, a pipe
into ``tee``) a live display would only draw at the end, so a plain line is printed instead when
the run starts, every ``TOA_PROGRESS_EVERY_S`` seconds (default 5) and when it ends::

    prompts 120/1000 (12.0%) | 2:05 elapsed | ETA 15:16 | 380.2 calls/s | 1,204,332 tok | 3 failures
"""

from __future__ import annotations

import os
import threading
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

__all__ = ["PLAIN_EVERY_ENV", "RichProgress", "clock"]

PLAIN_EVERY_ENV = "TOA_PROGRESS_EVERY_S"
"""The environment variable that sets how often plain progress lines are printed (seconds)."""
_PLAIN_EVERY_S = 5.0


class RichProgress:
    """`toa.engine.runner.ProgressSink` drawn with rich, or as plain lines when the console is
    not a terminal (module docstring). Use as a context manager."""

    def __init__(
        self, console: Console, *, description: str = "prompts", plain: bool | None = None
    ) -> None:
        self._console = console
        self._plain = not console.is_terminal if plain is None else plain
        self._every_s = _plain_every_s()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._total = 0
        self._done = 0
        self._done_at_start = 0
        self._printed_done = -1
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

    @property
    def calls(self) -> int:
        """Calls sent so far (not replayed, not from the cache), over finished prompts."""
        return self._calls

    @property
    def tokens(self) -> int:
        return self._tokens

    @property
    def cost_usd(self) -> float:
        return self._cost

    @property
    def total(self) -> int:
        """Prompts in the input (0 before `started`)."""
        return self._total

    def __enter__(self) -> RichProgress:
        if self._plain:
            self._ticker = threading.Thread(target=self._tick, name="toa-progress", daemon=True)
            self._ticker.start()
        else:
            self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._plain:
            self._progress.stop()
            return
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._task is not None:
            self._print_line()

    def _tick(self) -> None:
        """Every `_every_s`: a line when something finished since the last one, or at least
        every 6 periods as a heartbeat (a slow prompt)."""
        quiet = 0
        while not self._stop.wait(self._every_s):
            if self._task is None:
                continue
            quiet += 1
            if self._done != self._printed_done or quiet >= 6:
                self._print_line()
                quiet = 0

    def _print_line(self) -> None:
        elapsed = time.perf_counter() - self._started
        percent = 100.0 * self._done / self._total if self._total else 100.0
        parts = [
            f"{self._description} {self._done}/{self._total} ({percent:.1f}%)",
            f"{clock(elapsed)} elapsed",
            f"ETA {self._eta(elapsed)}",
            self._stats(markup=False),
        ]
        self._printed_done = self._done
        self._console.print(" | ".join(parts), markup=False, highlight=False, soft_wrap=True)

    def _eta(self, elapsed: float) -> str:
        new = self._done - self._done_at_start
        if self._done >= self._total:
            return "0:00"
        if new <= 0 or elapsed <= 0:
            return "-"
        return clock((self._total - self._done) * elapsed / new)

    def started(self, *, total: int, already_done: int) -> None:
        self._started = time.perf_counter()
        self._total, self._done, self._done_at_start = total, already_done, already_done
        if already_done:
            self._console.print(f"resuming: {already_done} of {total} prompts already done")
        self._task = self._progress.add_task(
            self._description, total=total, completed=already_done, stats=self._stats()
        )
        if self._plain:
            self._print_line()

    def prompt_finished(self, prompt_id: str, compute: Compute, *, ok: bool) -> None:
        self._calls += compute.calls - compute.replayed_calls - compute.cached_calls
        self._tokens += compute.prompt_tokens + compute.completion_tokens
        self._failed_calls += compute.failed_calls
        self._failed_rewards += compute.failed_rewards
        self._failed_prompts += not ok
        self._cost += compute.cost_usd
        self._done += 1
        if self._task is not None:
            self._progress.update(self._task, advance=1, stats=self._stats())

    def bad_row(self, error: InputError) -> None:
        self._bad_rows += 1
        self._console.print(f"[yellow]bad row[/]: {error}", highlight=False)
        if self._task is not None:
            self._progress.update(self._task, stats=self._stats())

    def _stats(self, *, markup: bool = True) -> str:
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        parts = [
            f"{self._calls:,} calls ({self._calls / elapsed:.1f}/s)",
            f"{self._tokens:,} tok",
        ]
        failures = self._failed_calls + self._failed_rewards + self._failed_prompts
        if failures:
            parts.append(f"[red]{failures} failures[/]" if markup else f"{failures} failures")
        if self._bad_rows:
            bad = f"{self._bad_rows} bad rows"
            parts.append(f"[yellow]{bad}[/]" if markup else bad)
        if self._cost:
            parts.append(f"${self._cost:.4f}")
        return (" · " if markup else " | ").join(parts)


def clock(seconds: float) -> str:
    """H:MM:SS, or M:SS under an hour."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _plain_every_s() -> float:
    """`PLAIN_EVERY_ENV` in seconds (> 0), else the default."""
    raw = os.environ.get(PLAIN_EVERY_ENV, "")
    try:
        value = float(raw)
    except ValueError:
        return _PLAIN_EVERY_S
    return value if value > 0 else _PLAIN_EVERY_S
