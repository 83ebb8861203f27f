"""`toa serve`: TOA behind an OpenAI-compatible endpoint (`toa.serve`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from toa.cli.common import console, fail
from toa.errors import ConfigError, TOAError

__all__ = ["serve_command"]


def serve_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="The YAML configuration.")],
    host: Annotated[
        str, typer.Option(help="Interface to bind: loopback unless told (another needs a key).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).", min=0, max=65535)] = 8080,
    store: Annotated[
        Path,
        typer.Option(help="Serve directory: every search is stored there like a run's prompt."),
    ] = Path("toa_serve"),
    insecure: Annotated[
        bool,
        typer.Option(help="Allow a non-loopback --host without serve.api_key_env (no key)."),
    ] = False,
) -> None:
    """Serve TOA as an OpenAI-compatible endpoint: POST /v1/chat/completions, GET /v1/models.

    Ask for model `toa` (the configured strategy) or `toa:<strategy>`; per request settings go
    in extra_body: {"toa": {"strategy": ..., "budget": ..., "return_tree": true}} (budget at
    most serve.max_budget). The reply is the best answer (`n` > 1: the n best distinct ones)
    with `usage` summed over every internal generation and a `toa` field (agent, reward,
    compute, the tree when asked). `stream: true` sends keep-alive comments while the search
    runs, then the answer: it is only known when the search ends. A model named like an agent
    goes straight to that agent. Every search is stored in --store, so `toa export` and
    `toa report` work on it. Limits: the configuration's serve: section. Ctrl-C / SIGTERM stop
    taking requests and let the searches in flight finish (serve.drain_s).
    """
    import asyncio
    import signal

    from toa.config import load_config
    from toa.serve import serve

    def ready(url: str) -> None:
        console.print(f"serving toa on {url} (store {store}); Ctrl-C stops", highlight=False)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        return await serve(
            settings, serve_dir=store, host=host, port=port, insecure=insecure, stop=stop,
            ready=ready,
        )  # fmt: skip

    try:
        settings = load_config(config)
        served = asyncio.run(main())
    except TOAError as error:
        fail(error)
    except OSError as error:
        fail(ConfigError(f"cannot listen on {host}:{port}: {error.strerror or error}"))
    console.print(f"stopped: {served} search(es) served in this session; stored in {store}")
