"""Running the fake server: worlds named as a configuration names them, a thread, the command line.

`build_world` makes the world a ``toa fake-server`` command or a test asks for; `running_in_thread`
runs a `FakeServer` for synchronous code; `serve` runs one until a signal (``toa fake-server``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from toa.testing.faults import Faults
from toa.testing.server import FakeServer, Latency
from toa.testing.world import World, judge_profile

__all__ = ["build_world", "running_in_thread", "serve"]

# The fake server logs under one name, whichever of its modules does the logging.
logger = logging.getLogger("toa.testing.server")


def build_world(
    world_name: str = "helps",
    agents: Sequence[str] | str | None = None,
    seed: int = 0,
    judges: Sequence[str] | str | None = None,
) -> World:
    """The named world, with its agents named as a configuration names them.

    Args:
        world_name: 'helps', 'hurts', 'dominant' or 'specialists'.
        agents: agent names (a sequence, or one comma-separated string); None or empty keeps the
            world's own agents. A name the world has keeps its profile; the k-th other name
            (k = 0, 1, ...) takes the profile of the world's agent number k modulo the number of
            agents, in the world's order, renamed. The world then has exactly these agents, and
            the judges.
        seed: the world's seed.
        judges: names of judge agents (a sequence, or one comma-separated string), added after
            the agents with `toa.testing.world.judge_profile` (they grade responses; see
            `toa.testing.server`). A name may not be both an agent and a judge.
    """
    base = World.named(world_name, seed=seed)
    names, judge_names = _names(agents), _names(judges)
    if not judge_names and not names:
        return base
    if not names:
        names = list(base.agent_names)
    if len(set(names + judge_names)) != len(names) + len(judge_names):
        raise ValueError(f"agent names must be unique (judges too), got {names + judge_names}")
    profiles = []
    spare = 0
    for name in names:
        if name in base.agent_names:
            profiles.append(base.profile(name))
        else:
            profiles.append(replace(base.agents[spare % len(base.agents)], name=name))
            spare += 1
    profiles += [judge_profile(name, base.n_families) for name in judge_names]
    return World(agents=tuple(profiles), n_families=base.n_families, seed=seed, name=base.name)


def _names(given: Sequence[str] | str | None) -> list[str]:
    if isinstance(given, str):
        given = given.split(",")
    return [name.strip() for name in given or () if name.strip()]


@dataclass
class _Thread:
    ready: threading.Event = field(default_factory=threading.Event)
    loop: asyncio.AbstractEventLoop | None = None
    stop: asyncio.Event | None = None
    error: BaseException | None = None


@contextlib.contextmanager
def running_in_thread(
    world: World | None = None, *, start_timeout_s: float = 30.0, **kwargs: Any
) -> Iterator[FakeServer]:
    """Run a `FakeServer` on its own event loop in a daemon thread, for synchronous code.

    `world` and `kwargs` are `FakeServer`'s arguments. The server is listening when the block
    starts and closed when it ends. `stats`, `requests`, `set_faults` and the other controls may
    be used from the calling thread.
    """

    server = FakeServer(world, **kwargs)
    state = _Thread()
    thread = threading.Thread(
        target=_run_in_thread, args=(server, state), name="toa-fake-server", daemon=True
    )
    thread.start()
    if not state.ready.wait(start_timeout_s) or state.error is not None:
        raise RuntimeError("the fake server thread could not start") from state.error
    try:
        yield server
    finally:
        if state.loop is not None and state.stop is not None and thread.is_alive():
            state.loop.call_soon_threadsafe(state.stop.set)
        thread.join()


def _run_in_thread(server: FakeServer, state: _Thread) -> None:
    """The thread of `running_in_thread`: serve until `state.stop` is set."""

    async def main() -> None:
        state.loop = asyncio.get_running_loop()
        state.stop = asyncio.Event()
        async with server:
            state.ready.set()
            await state.stop.wait()

    try:
        asyncio.run(main())
    except BaseException as exc:  # reported to the caller by running_in_thread
        state.error = exc
    finally:
        state.ready.set()


def serve(
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    world_name: str = "helps",
    agents: Sequence[str] | str | None = None,
    judges: Sequence[str] | str | None = None,
    latency_ms: Latency = 0.0,
    fail_rate: float = 0.0,
    faults: Faults | None = None,
    seed: int = 0,
    port_file: str | os.PathLike[str] | None = None,
    request_log: str | os.PathLike[str] | None = None,
) -> None:
    """Run a fake server until SIGINT or SIGTERM (``toa fake-server``); blocks.

    Args:
        port: TCP port; 0 picks a free one.
        host: interface to listen on.
        world_name: 'helps', 'hurts', 'dominant' or 'specialists'.
        agents: agent names, see `build_world`.
        judges: judge agent names, see `build_world`.
        latency_ms: delay per request, in milliseconds (fixed, or ``(lo, hi)``).
        fail_rate: probability in [0, 1] that a request fails with HTTP 500 (when `faults` is
            None).
        faults: every fault to inject (`Faults`); replaces `fail_rate`.
        seed: seed of the world and of the fault and latency draws.
        port_file: when given, the bound port is written there (atomically, with a newline) once
            the server listens, so a parent process can find it.
        request_log: a file that gets one JSON line per generation request
            (`toa.testing.request_log`).
    """

    world = build_world(world_name, agents, seed, judges)
    server = FakeServer(
        world,
        host=host,
        port=port,
        latency_ms=latency_ms,
        faults=faults if faults is not None else Faults(error_rate=fail_rate),
        request_log_path=request_log,
    )
    asyncio.run(_serve_until_signalled(server, port_file))


async def _serve_until_signalled(
    server: FakeServer, port_file: str | os.PathLike[str] | None
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not main thread
            pass
    try:
        async with server:
            logger.info(
                "fake OpenAI-compatible server listening on %s (world %r, agents %s)",
                server.base_url,
                server.world.name,
                ", ".join(server.world.agent_names),
            )
            if port_file is not None:
                _write_port_file(Path(port_file), server.port)
            await stop.wait()
            logger.info("fake server stopping")
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def _write_port_file(path: Path, port: int) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{port}\n", encoding="utf-8")
    os.replace(tmp, path)
