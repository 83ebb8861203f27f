"""The `toa` command line. Thin: parse, build settings, call the library, set the exit code.

One module per command group: `runs` (run, resume, status, priors), `repair`, `export`, `serve`,
`fake_server`, `demo`, `models`; `common` holds what they share (console, error exit, Ctrl-C,
the run report) and `progress` the live display. The commands are registered on `app` here, in
`--help` order. Each command imports the library parts it runs (configuration, engine, rewards,
agents) inside itself, so that `toa --help` and `toa status` start at once
(`benchmarks/cli_startup.py`; `tests/test_cli_startup.py` keeps `import toa.cli` light).
"""

from __future__ import annotations

from typing import Annotated

import typer

from toa import __version__
from toa.cli.common import setup_logging
from toa.cli.demo import demo
from toa.cli.export import export_command
from toa.cli.fake_server import fake_server
from toa.cli.models import models_app
from toa.cli.repair import repair_command
from toa.cli.report import report_command
from toa.cli.runs import priors_command, resume_command, run_command, status_command
from toa.cli.serve import serve_command
from toa.cli.sweep import eval_command, sweep_command

__all__ = ["app", "main"]

app = typer.Typer(
    name="toa",
    help=(
        "Multi-agent sampling with Tree Search-based Orchestrated Agents (TOA): several language "
        "models collaborate on each prompt, steered by tree search and a reward model."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"toa {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More logging: -v info, -vv debug.")
    ] = 0,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    setup_logging(verbose)


app.command("run")(run_command)
app.command("resume")(resume_command)
app.command("status")(status_command)
app.command("priors")(priors_command)
app.command("sweep")(sweep_command)
app.command("eval")(eval_command)
app.command("repair")(repair_command)
app.command("export")(export_command)
app.command("report")(report_command)
app.command("serve")(serve_command)
app.command("fake-server")(fake_server)
app.command()(demo)
app.add_typer(models_app, name="models")


def main() -> None:
    """Console-script entry point."""
    app()
