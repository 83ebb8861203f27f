"""The `toa` command line. Thin: parse, build settings, call the library, set the exit code."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from toa import __version__

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
console = Console(stderr=True)


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
        force=True,
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
    _setup_logging(verbose)


@app.command("fake-server")
def fake_server(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 picks a free one).")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to bind (loopback unless told).")] = (
        "127.0.0.1"
    ),
    latency_ms: Annotated[
        float, typer.Option(help="Fixed latency added to every generation, in ms.")
    ] = 0.0,
    agents: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated agent (model) names; defaults to the world's agent_a,b,c. "
            "Unknown names take the world's profiles in order."
        ),
    ] = None,
    world: Annotated[
        str, typer.Option(help="Simulated world: helps | hurts | dominant.")
    ] = "helps",
    fail_rate: Annotated[
        float, typer.Option(help="Fraction of generation requests answered with HTTP 500.")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the world's noise and of the faults.")] = 0,
    port_file: Annotated[
        Path | None, typer.Option(help="Write the bound port here once listening.")
    ] = None,
) -> None:
    """Run an OpenAI-compatible test server with a simulated world of agents.

    Every response carries its hidden quality, which the `simulated` reward reads back; GET /stats
    counts requests by agent and kind (fresh, refine, aggregate). See `toa.testing.server`.
    """
    from toa.testing.server import serve

    agent_names = [a.strip() for a in agents.split(",") if a.strip()] if agents else None
    console.print(f"[bold]toa fake-server[/]: world {world!r}, seed {seed}; Ctrl-C stops it")
    serve(
        host=host,
        port=port,
        world_name=world,
        agents=agent_names,
        latency_ms=latency_ms,
        fail_rate=fail_rate,
        seed=seed,
        port_file=port_file,
    )


@app.command()
def demo(
    prompts: Annotated[int, typer.Option(help="How many prompts to send to each agent.")] = 6,
) -> None:
    """Run the embedded demo.

    For now it runs TOA's agent client against the built-in fake server (three simulated agents of
    known hidden quality) and prints what each agent did; the real local models come later.
    """
    from toa.demo import run_demo

    run_demo(console, n_prompts=prompts)


def main() -> None:
    """Console-script entry point."""
    app()
