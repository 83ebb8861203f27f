"""`toa fake-server`: the OpenAI-compatible test server with a simulated world of agents."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from toa.cli.common import console, fail
from toa.errors import TOAError


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
    judges: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated names of judge agents (for the `judge` reward): they answer "
            "Yes/No with log-probabilities P(Yes) = hidden quality, or 'Score: N' when asked for "
            "a 1-10 score."
        ),
    ] = None,
    world: Annotated[
        str, typer.Option(help="Simulated world: helps | hurts | dominant | specialists.")
    ] = "helps",
    fail_rate: Annotated[
        float,
        typer.Option(
            help="Fraction of generation requests answered with HTTP 500.", min=0.0, max=1.0
        ),
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
    from toa.testing.serve import build_world, serve

    agent_names = [a.strip() for a in agents.split(",") if a.strip()] if agents else None
    judge_names = [a.strip() for a in judges.split(",") if a.strip()] if judges else None
    if latency_ms < 0:
        fail(TOAError(f"--latency-ms must be >= 0, got {latency_ms:g}"))
    try:
        build_world(world, agent_names, seed, judge_names)  # checked before anything listens
    except ValueError as exc:
        fail(TOAError(f"--world/--agents/--judges: {exc}"))
    console.print(f"[bold]toa fake-server[/]: world {world!r}, seed {seed}; Ctrl-C stops it")
    try:
        serve(
            host=host,
            port=port,
            world_name=world,
            agents=agent_names,
            judges=judge_names,
            latency_ms=latency_ms,
            fail_rate=fail_rate,
            seed=seed,
            port_file=port_file,
        )
    except OSError as exc:
        fail(
            TOAError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port "
                "(0 picks a free one)"
            )
        )
