"""`toa report`: a run as one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from toa.cli.common import console, fail
from toa.errors import TOAError


def report_command(
    run_dir: Annotated[
        Path,
        typer.Argument(
            help="A run directory (finished, still running or interrupted), or a sweep "
            "directory (`toa sweep`)."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="The HTML file to write (default DIR/report.html)."),
    ] = None,
) -> None:
    """Write a self-contained HTML report of a run (summary, rewards, compute, every tree) or of
    a sweep (the verdict per budget, the plots, the cells, each cell's own report)."""
    from toa.report import write_report

    try:
        if (run_dir / "sweep.json").is_file():
            from toa.sweep.report import write_sweep_report

            path = write_sweep_report(run_dir, output)
        else:
            path = write_report(run_dir, output)
    except TOAError as exc:
        fail(exc)
    console.print(f"wrote {path}", highlight=False)
