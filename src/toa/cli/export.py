"""`toa export`: finished prompts as SFT rows or DPO pairs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from toa.cli.common import console, fail
from toa.errors import TOAError


def export_command(
    run_dir: Annotated[
        Path, typer.Argument(help="A run directory (finished, still running or interrupted).")
    ],
    format: Annotated[str, typer.Option("--format", "-f", help="sft or dpo.")],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="A .jsonl or .parquet file, or a directory."),
    ],
    layout: Annotated[
        str, typer.Option(help="SFT rows: messages, or prompt-completion (two message lists).")
    ] = "messages",
    system_prompt: Annotated[
        str | None, typer.Option(help="A system message put first when a prompt has none.")
    ] = None,
    min_reward: Annotated[
        float | None, typer.Option(help="Leave out prompts whose best raw reward is below this.")
    ] = None,
    rejected: Annotated[
        str | None, typer.Option(help="DPO: the rejected response: lowest (default) or rank.")
    ] = None,
    rejected_rank: Annotated[
        int | None,
        typer.Option(help="DPO: reject the K-th ranked response (the paper: 30 of 160).", min=2),
    ] = None,
    if_short: Annotated[
        str, typer.Option(help="DPO, fewer responses than K: lowest (pair it) or skip.")
    ] = "lowest",
    min_margin: Annotated[
        float, typer.Option(help="DPO: the reward gap a pair must exceed (0: no ties).", min=0.0)
    ] = 0.0,
    pairs_per_prompt: Annotated[
        int, typer.Option(help="DPO: pairs per prompt at most, each with the best.", min=1)
    ] = 1,
    different_agents: Annotated[
        bool, typer.Option(help="DPO: the rejected response must come from another agent.")
    ] = False,
    max_length_ratio: Annotated[
        float | None,
        typer.Option(help="DPO: drop pairs whose chosen/rejected length ratio is above this."),
    ] = None,
    dedupe: Annotated[
        str, typer.Option(help="DPO duplicates: near (normalised text), exact or none.")
    ] = "near",
    card: Annotated[
        bool | None,
        typer.Option("--card/--no-card", help="Write a dataset card (default: directories)."),
    ] = None,
) -> None:
    """Export finished prompts as SFT rows or DPO pairs in TRL's conversational form.

    Works on a run that is still going or was interrupted: only finished prompts are exported,
    and the report says how many were left out and why. Exit code: 0 rows written; 1 no row
    (nothing finished yet, or everything filtered out); 2 a usage, option or path error.
    """
    # The export options, by name (the parameters above, first thing: nothing else is local yet).
    flags = {k: v for k, v in locals().items() if k not in ("run_dir", "format", "output", "card")}
    # `datasets` reads these at import; the export only writes locally and never needs the Hub.
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from toa.export import export_run, make_options

    try:
        checked, options = make_options(format, **flags)
        report = export_run(run_dir, format=checked, out=output, options=options, card=card)
    except TOAError as error:
        fail(error)
    for line in report.lines():
        console.print(line, highlight=False, markup=False)
    if report.rows == 0:
        console.print("[yellow]no row was exported[/]: see the reasons above")
        raise typer.Exit(1)
