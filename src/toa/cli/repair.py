"""`toa repair`: recover a run whose store is missing, empty or damaged (`toa.store.repair`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from toa.cli.common import console, fail
from toa.errors import TOAError

if TYPE_CHECKING:
    from toa.store.repair import RepairReport, TableRepair

_NAMED = 10  # lost prompts named in the report


def repair_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by `toa run`.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be done; change nothing.")
    ] = False,
) -> None:
    """Recover a run whose store is missing, empty or damaged, then continue with `toa resume`.

    Builds a new store from every row the old one still holds and every result line of
    results.jsonl, moves the old store aside (store.sqlite.damaged-TIME) and rewrites
    results.jsonl; says what was lost. A healthy store is left as it is. Takes the run's lock.
    Exit code: 0 done (or nothing to do); 2 it could not be done (the message says why).
    """
    from toa.store.repair import repair_run

    try:
        report = repair_run(run_dir, dry_run=dry_run)
    except TOAError as error:
        fail(error)
    print_repair(report)


def print_repair(report: RepairReport) -> None:
    """The report as a small table, then what to do next."""
    title = f"repair {report.run_dir}" + (" (dry run: nothing changed)" if report.dry_run else "")
    table = Table(title=title, show_header=False)
    store = report.state + (f": {report.problem}" if report.problem else "")
    table.add_row("store", store)
    for t in report.tables:
        table.add_row(f"  {t.name}", _table_line(t, healthy=report.state == "ok"))
    table.add_row(
        "results",
        f"{report.results_from_store:,} from the store, {report.results_from_file:,} from "
        f"results.jsonl only; results.jsonl {'would hold' if report.dry_run else 'holds'} "
        f"{report.results_lines:,}",
    )
    if report.bad_result_lines:
        table.add_row("bad lines", f"{report.bad_result_lines:,} lines of results.jsonl skipped")
    if report.lost_prompts:
        shown = ", ".join(report.lost_prompts[:_NAMED])
        lost = len(report.lost_prompts)
        more = f", ... ({lost:,} in all)" if lost > _NAMED else ""
        table.add_row("lost prompts", f"{shown}{more}: a resume runs them again")
    table.add_row("done", _action(report))
    if report.damaged_copy is not None:
        table.add_row("old store", str(report.damaged_copy))
    console.print(table)
    if report.action != "none" or not report.dry_run:
        console.print(f"next: [bold]{report.next_command}[/]", highlight=False)


def _table_line(t: TableRepair, *, healthy: bool) -> str:
    rows = f"{t.recovered:,} row{'' if t.recovered == 1 else 's'}"
    if not t.present:
        return "not in the old store"
    if healthy:
        return rows
    if t.exact:
        lost = f"{t.unreadable:,} unreadable"
    elif t.unreadable:
        lost = f"at least {t.unreadable:,} unreadable"
    else:
        lost = "could not be read (unknown rows lost)"
    return f"{rows} recovered, {lost}"


def _action(report: RepairReport) -> str:
    would = report.dry_run
    if report.action == "none":
        tmp = (
            " (a stale results.jsonl.tmp " + ("would be" if would else "was") + " removed)"
            if report.stale_tmp
            else ""
        )
        return f"nothing: the store is healthy and results.jsonl agrees with it{tmp}"
    if report.action == "results rewritten":
        verb = "would be" if would else "was"
        return f"the store is healthy; results.jsonl {verb} rewritten from it"
    if report.action == "results added":
        verb = "would be added" if would else "were added"
        return f"the store is healthy; {report.results_from_file:,} results {verb} to it"
    verb = "would be rebuilt" if would else "was rebuilt"
    return f"the store {verb} from what could be read and results.jsonl"
