"""What an export did: rows written, prompts left out and why, dropped samples, reward statistics.

`ExportReport` is returned by `export_run`; the CLI prints `ExportReport.lines()`. `Tally` is the
running count the export keeps while it streams the run's results.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from toa.export.records import Converted

__all__ = ["ExportFormat", "ExportReport", "RewardStats", "Tally", "quantile"]

ExportFormat = Literal["sft", "dpo"]

_LEFT_OUT_NOTES = {
    "unfinished": "prompts with calls but no result yet (running or interrupted)",
}


def quantile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile (0 <= q <= 1) of sorted, non-empty values, interpolated linearly.

    The same definition as numpy's default ('linear'): position q * (n - 1).
    """
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True, slots=True)
class RewardStats:
    """Summary of raw rewards (the reward model's units): count, mean and five quantiles."""

    count: int
    mean: float
    min: float
    p25: float
    median: float
    p75: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> RewardStats | None:
        """The statistics of `values`; None when there are none."""
        if not values:
            return None
        ordered = sorted(values)
        return cls(
            count=len(ordered),
            mean=math.fsum(ordered) / len(ordered),
            min=ordered[0],
            p25=quantile(ordered, 0.25),
            median=quantile(ordered, 0.5),
            p75=quantile(ordered, 0.75),
            max=ordered[-1],
        )

    def describe(self) -> str:
        """One line: mean and the quantiles, 4 significant digits."""
        return (
            f"mean {self.mean:.4g} (min {self.min:.4g}, p25 {self.p25:.4g}, median "
            f"{self.median:.4g}, p75 {self.p75:.4g}, max {self.max:.4g}; n={self.count})"
        )


@dataclass(frozen=True, slots=True)
class ExportReport:
    """The outcome of one export.

    Attributes:
        run_dir: the run directory read.
        out: the file or directory written.
        format: 'sft' or 'dpo'.
        rows: rows written.
        prompts_read: distinct finished prompts read from the store ('done' or 'failed').
        prompts_exported: prompts that gave at least one row.
        left_out: prompts that gave no row, by reason (see `toa.export.records.SkipReason`),
            plus 'unfinished': prompts with calls but no result when the export ended.
        samples_dropped: responses of exported-or-not prompts that were never candidates, by
            reason ('failed_call', 'empty_response', 'unscored', 'duplicate').
        pairs_dropped: DPO pairs dropped by a filter and replaced or lost ('length_ratio').
        rank_fallbacks: DPO prompts with fewer candidates than `rejected_rank` that paired the
            lowest instead.
        rewards: raw reward statistics of the rows: 'best' (SFT) or 'chosen' and 'rejected' (DPO).
        mean_length_ratio: DPO: the mean over pairs of len(chosen) / len(rejected), in
            characters; above 1 means the chosen responses tend to be longer. None for SFT.
        card: the dataset card written, if any.
    """

    run_dir: Path
    out: Path
    format: ExportFormat
    rows: int
    prompts_read: int
    prompts_exported: int
    left_out: Mapping[str, int]
    samples_dropped: Mapping[str, int]
    pairs_dropped: Mapping[str, int]
    rank_fallbacks: int
    rewards: Mapping[str, RewardStats]
    mean_length_ratio: float | None
    card: Path | None

    @property
    def left_out_total(self) -> int:
        """Prompts left out, whatever the reason (unfinished ones included)."""
        return sum(self.left_out.values())

    def lines(self) -> list[str]:
        """The report as short human-readable lines (the CLI prints them)."""
        lines = [
            f"wrote {self.rows:,} {self.format.upper()} rows to {self.out}",
            f"prompts: {self.prompts_read:,} finished read, {self.prompts_exported:,} exported, "
            f"{self.left_out_total:,} left out",
        ]
        for reason, count in sorted(self.left_out.items(), key=lambda kv: (-kv[1], kv[0])):
            note = _LEFT_OUT_NOTES.get(reason)
            lines.append(f"  left out, {reason}: {count:,}" + (f" ({note})" if note else ""))
        lines.extend(_counts_line("samples dropped", self.samples_dropped))
        lines.extend(_counts_line("pairs dropped", self.pairs_dropped))
        if self.rank_fallbacks:
            lines.append(f"rank fallbacks (fewer candidates than the rank): {self.rank_fallbacks}")
        for name, stats in self.rewards.items():
            lines.append(f"{name} reward: {stats.describe()}")
        if self.mean_length_ratio is not None:
            lines.append(f"mean chosen/rejected length ratio: {self.mean_length_ratio:.3f}")
        if self.card is not None:
            lines.append(f"dataset card: {self.card}")
        return lines


def _counts_line(title: str, counts: Mapping[str, int]) -> list[str]:
    if not counts:
        return []
    parts = ", ".join(f"{count:,} {name}" for name, count in sorted(counts.items()))
    return [f"{title}: {parts}"]


def _text_length(messages: list[dict[str, str]]) -> int:
    return len(messages[-1]["content"].strip())


@dataclass(slots=True)
class Tally:
    """The running counts of an export, one result line at a time.

    A prompt may appear twice while a run is going (a failed prompt redone by a resume): the
    later line replaces a left-out earlier one; once a prompt gave rows it is never exported again.
    """

    format: ExportFormat
    rows: int = 0
    exported: int = 0
    left_out: Counter[str] = field(default_factory=Counter)
    samples_dropped: Counter[str] = field(default_factory=Counter)
    pairs_dropped: Counter[str] = field(default_factory=Counter)
    rank_fallbacks: int = 0
    rewards: dict[str, list[float]] = field(default_factory=dict)
    ratios: list[float] = field(default_factory=list)
    outcome: dict[str, str] = field(default_factory=dict)  # prompt id -> 'exported' or reason

    def already_exported(self, prompt_id: str) -> bool:
        """Whether an earlier line of this prompt gave rows (skip this one)."""
        return self.outcome.get(prompt_id) == "exported"

    def left_out_reason(self, prompt_id: str, reason: str) -> None:
        """Count a prompt left out before conversion (an unreadable line)."""
        self._forget(prompt_id)
        self.outcome[prompt_id] = reason
        self.left_out[reason] += 1

    def add(self, prompt_id: str, converted: Converted) -> None:
        """Count one converted result line (its rows are being written)."""
        self._forget(prompt_id)
        self.samples_dropped.update(converted.samples_dropped)
        self.pairs_dropped.update(converted.pairs_dropped)
        if converted.rank_fallback and converted.rows:
            self.rank_fallbacks += 1
        if converted.skip is not None or not converted.rows:
            reason = converted.skip or "no_row"
            self.outcome[prompt_id] = reason
            self.left_out[reason] += 1
            return
        self.outcome[prompt_id] = "exported"
        self.exported += 1
        self.rows += len(converted.rows)
        for row in converted.rows:
            self._add_row(row)

    def _forget(self, prompt_id: str) -> None:
        previous = self.outcome.get(prompt_id)
        if previous is not None and previous != "exported":
            self.left_out[previous] -= 1
            if not self.left_out[previous]:
                del self.left_out[previous]

    def _add_row(self, row: Mapping[str, Any]) -> None:
        if self.format == "sft":
            self.rewards.setdefault("best", []).append(row["reward"])
            return
        self.rewards.setdefault("chosen", []).append(row["chosen_reward"])
        self.rewards.setdefault("rejected", []).append(row["rejected_reward"])
        self.ratios.append(_text_length(row["chosen"]) / _text_length(row["rejected"]))

    def report(
        self, *, run_dir: Path, out: Path, unfinished: int, card: Path | None
    ) -> ExportReport:
        """The final report; `unfinished` is added to `left_out` when non-zero."""
        left_out = dict(self.left_out)
        if unfinished:
            left_out["unfinished"] = unfinished
        stats = {name: RewardStats.of(values) for name, values in self.rewards.items()}
        return ExportReport(
            run_dir=run_dir,
            out=out,
            format=self.format,
            rows=self.rows,
            prompts_read=len(self.outcome),
            prompts_exported=self.exported,
            left_out=left_out,
            samples_dropped=dict(self.samples_dropped),
            pairs_dropped=dict(self.pairs_dropped),
            rank_fallbacks=self.rank_fallbacks,
            rewards={name: s for name, s in stats.items() if s is not None},
            mean_length_ratio=math.fsum(self.ratios) / len(self.ratios) if self.ratios else None,
            card=card,
        )
