"""Export options from plain strings and numbers (the command line's values), checked.

`make_options` turns ``toa export``'s flags into `SFTOptions` or `DPOOptions`, so the CLI stays a
thin parser and every check lives here, where it is tested.
"""

from __future__ import annotations

from typing import cast

from toa.errors import ExportError
from toa.export.dpo import DPOOptions, IfShort
from toa.export.filters import Dedupe
from toa.export.report import ExportFormat
from toa.export.sft import SFTLayout, SFTOptions

__all__ = ["make_options"]


def _rejected_rank(rejected: str | None, rejected_rank: int | None) -> int | None:
    """The DPO rejected rank from ``--rejected lowest|rank`` and ``--rejected-rank K``."""
    if rejected not in (None, "lowest", "rank"):
        raise ExportError(f"--rejected must be lowest or rank, got {rejected!r}")
    if rejected == "lowest" and rejected_rank is not None:
        raise ExportError("--rejected lowest and --rejected-rank K contradict: give one")
    if rejected == "rank" and rejected_rank is None:
        raise ExportError("--rejected rank needs --rejected-rank K (the paper: 30 of 160)")
    return rejected_rank


def make_options(
    format: str,
    *,
    layout: str = "messages",
    system_prompt: str | None = None,
    min_reward: float | None = None,
    rejected: str | None = None,
    rejected_rank: int | None = None,
    if_short: str = "lowest",
    min_margin: float = 0.0,
    pairs_per_prompt: int = 1,
    different_agents: bool = False,
    max_length_ratio: float | None = None,
    dedupe: str = "near",
) -> tuple[ExportFormat, SFTOptions | DPOOptions]:
    """The checked format and its options; the other format's settings are ignored.

    `layout` accepts 'prompt-completion' for 'prompt_completion'. `rejected` is 'lowest', 'rank'
    (needs `rejected_rank`) or None (rank when `rejected_rank` is given, else lowest).

    Raises:
        ExportError: an unknown format or value, or contradictory settings.
    """
    if format == "sft":
        return "sft", SFTOptions(
            layout=cast(SFTLayout, layout.replace("-", "_")),  # SFTOptions checks the value
            system_prompt=system_prompt,
            min_reward=min_reward,
        )
    if format != "dpo":
        raise ExportError(f"--format must be sft or dpo, got {format!r}")
    return "dpo", DPOOptions(
        system_prompt=system_prompt,
        min_reward=min_reward,
        rejected_rank=_rejected_rank(rejected, rejected_rank),
        if_short=cast(IfShort, if_short),  # DPOOptions checks the values
        min_margin=min_margin,
        pairs_per_prompt=pairs_per_prompt,
        different_agents=different_agents,
        max_length_ratio=max_length_ratio,
        dedupe=cast(Dedupe, dedupe),
    )
