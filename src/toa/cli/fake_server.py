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
        str,
        typer.Option(
            help="Latency added to every generation, in ms: a number, or LO,HI for a uniform "
            "draw per request (e.g. 20,200)."
        ),
    ] = "0",
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
    error_rate: Annotated[
        float,
        typer.Option(
            "--error-rate",
            "--fail-rate",
            help="Fraction of generation requests answered with HTTP 500.",
        ),
    ] = 0.0,
    rate_limit_rate: Annotated[
        float,
        typer.Option(help="Fraction answered with HTTP 429 and a Retry-After header."),
    ] = 0.0,
    retry_after_s: Annotated[
        float, typer.Option(help="The Retry-After value of those 429s, in seconds.")
    ] = 1.0,
    timeout_rate: Annotated[
        float,
        typer.Option(
            help="Fraction held --hang-s seconds before the answer (a client with a shorter "
            "timeout gives up first)."
        ),
    ] = 0.0,
    hang_s: Annotated[float, typer.Option(help="How long a timeout fault holds a request.")] = (
        30.0
    ),
    drop_rate: Annotated[
        float,
        typer.Option(help="Fraction whose connection is closed without any HTTP response."),
    ] = 0.0,
    dead_agents: Annotated[
        str | None,
        typer.Option(help="Comma-separated agents whose every request fails (see --dead-mode)."),
    ] = None,
    dead_mode: Annotated[
        str, typer.Option(help="How a dead agent's requests fail: 500 | 503 | drop.")
    ] = "503",
    request_log: Annotated[
        Path | None,
        typer.Option(
            help="Append one JSON line per generation request to this file (seq, time, agent, "
            "kind, status, fault, seed, request_id: equal for identical requests), flushed at "
            "once. No header or message text is written."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the world's noise and of the faults.")] = 0,
    port_file: Annotated[
        Path | None, typer.Option(help="Write the bound port here once listening.")
    ] = None,
) -> None:
    """Run an OpenAI-compatible test server with a simulated world of agents.

    Every response carries its hidden quality, which the `simulated` reward reads back; GET /stats
    counts requests by agent, kind (fresh, refine, aggregate) and status. The fault options
    (500s, 429s with Retry-After, timeouts, dropped connections, dead agents) let you test your
    own setup's retries and breakers; --request-log records every request. Faults are drawn from
    --seed, so a run is repeatable. See `toa.testing.server`.
    """
    from toa.testing.faults import Faults
    from toa.testing.serve import build_world, serve

    agent_names = _names(agents)
    judge_names = _names(judges)
    latency = _latency(latency_ms)
    try:
        built = build_world(world, agent_names, seed, judge_names)  # checked before listening
    except ValueError as exc:
        fail(TOAError(f"--world/--agents/--judges: {exc}"))
    dead = _names(dead_agents) or []
    unknown = sorted(set(dead) - set(built.agent_names))
    if unknown:
        fail(TOAError(f"--dead-agents: unknown agent(s) {unknown}; the agents are "
                      f"{', '.join(built.agent_names)}"))  # fmt: skip
    try:
        faults = Faults(
            error_rate=error_rate,
            rate_limit_rate=rate_limit_rate,
            retry_after_s=retry_after_s,
            timeout_rate=timeout_rate,
            hang_s=hang_s,
            drop_rate=drop_rate,
            dead_agents=frozenset(dead),
            dead_mode=dead_mode,  # type: ignore[arg-type]  # checked by Faults
        )
    except ValueError as exc:
        message = str(exc).replace("Faults.error_rate", "--error-rate (--fail-rate)")
        for name in ("rate_limit_rate", "timeout_rate", "drop_rate", "retry_after_s", "hang_s"):
            message = message.replace(f"Faults.{name}", "--" + name.replace("_", "-"))
        message = message.replace("Faults.dead_mode", "--dead-mode")
        fail(TOAError(message))
    if request_log is not None:
        try:
            request_log.open("a", encoding="utf-8").close()
        except OSError as exc:
            fail(TOAError(f"--request-log {request_log}: {exc.strerror or exc}"))
    console.print(f"[bold]toa fake-server[/]: world {world!r}, seed {seed}; Ctrl-C stops it")
    try:
        serve(
            host=host,
            port=port,
            world_name=world,
            agents=agent_names,
            judges=judge_names,
            latency_ms=latency,
            faults=faults,
            seed=seed,
            port_file=port_file,
            request_log=request_log,
        )
    except OSError as exc:
        fail(
            TOAError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port "
                "(0 picks a free one)"
            )
        )


def _names(given: str | None) -> list[str] | None:
    return [a.strip() for a in given.split(",") if a.strip()] if given else None


def _latency(text: str) -> float | tuple[float, float]:
    """``--latency-ms``: a number, or ``LO,HI``; a one-line error otherwise."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1 and values[0] >= 0:
        return values[0]
    if len(values) == 2 and 0 <= values[0] <= values[1]:
        return (values[0], values[1])
    fail(TOAError(f"--latency-ms must be a number >= 0 or LO,HI with 0 <= LO <= HI, got {text!r}"))
