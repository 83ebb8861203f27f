"""The runner: many prompts in flight, each running its strategy, results written as they finish.

Memory does not grow with the input: prompts are read as a stream and at most
`runner.prompts_in_flight` are held at once. Every call and reward is committed to the run store
as it completes (see `toa.engine.context`), a prompt's result is committed to the store and then
appended to ``results.jsonl``; the store is the source of truth and ``results.jsonl`` is rebuilt
from it when a run starts and ends, so it always holds exactly one line per finished prompt.
Continuing a run first checks that its input is still its own (`toa.engine.input_identity`).

Cancelling `run` (Ctrl-C in the CLI) abandons in-flight calls, keeps everything finished, and
leaves the directory ready for `toa resume`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from toa.agents import AgentPool
from toa.engine.input_identity import InputScan
from toa.engine.preflight import check_start
from toa.engine.ray_runner import check_limits, check_ray, run_on_ray
from toa.engine.session import (
    DRAIN_S,
    ProgressSink,
    PromptOutcome,
    RunReport,
    RunSession,
    build_reward,
    close_run,
    feed_until_stopped,
    learned_prior,
    prepare_run,
    results_file,
)
from toa.errors import ConfigError, InputError
from toa.inputs.readers import read_prompts
from toa.settings import RunSettings
from toa.store.cache import GenerationCache
from toa.store.run_files import rebuild_results, run_lock
from toa.store.run_store import RunStore
from toa.types import Prompt

__all__ = [
    "DRAIN_S",
    "ProgressSink",
    "PromptOutcome",
    "RunReport",
    "RunSession",
    "build_reward",
    "learned_prior",
    "rebuild_results",
    "run",
]

logger = logging.getLogger(__name__)


async def run(
    settings: RunSettings,
    *,
    input_path: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    prompt_field: str | None = None,
    limit: int | None = None,
    progress: ProgressSink | None = None,
    stop: asyncio.Event | None = None,
    force: bool = False,
    rerun_changed: bool = False,
    drain_s: float = DRAIN_S,
) -> RunReport:
    """Run (or continue) `settings` over the prompts in `input_path`, into `run_dir`.

    Finished prompts found in the run's store are skipped; unfinished ones replay their stored
    calls. Continuing a run checks the input against the one it was made from (the manifest
    records its path, sha256 and prompt count; the store, each prompt's content hash; see
    `toa.engine.input_identity`): another file with other prompts is refused, and so is a
    finished prompt whose content was edited, unless `rerun_changed` discards its result and
    runs it again. Prompts added to the input run; finished ones removed from it are kept.
    With `runner.cache` set, generations are also looked up in (and written to) that generation
    cache, shared across runs (see `toa.store.cache`). Setting `stop` ends the run cleanly: no
    new request or reward call is sent, those in flight get up to `drain_s` seconds to finish
    and be stored (so they are never paid for again), then unfinished prompts are abandoned;
    everything finished is kept and the report says `interrupted`. Cancelling the task
    propagates as usual.
    Before anything is created, `toa.engine.preflight.check_start` checks the agents' key
    variables, the input and the directory (`force`: use a non-empty directory that is not a
    run). Raises `ConfigError` when the directory holds a run made with different settings or
    cannot be a run directory, `InputError` for a missing input or one that is not the run's
    (nothing is sent, the manifest is left as it was), `StoreError` when a run's store is gone
    but its results remain, and `RunLockedError` when another process is using it.
    """
    input_path, run_dir = Path(input_path), Path(run_dir)
    check_start(settings, input_path=input_path, run_dir=run_dir, force=force)
    if settings.runner.backend == "ray":
        check_ray(settings.runner.address)
        check_limits(settings)
        if settings.runner.cache is not None:
            raise ConfigError(
                "runner.cache is not supported with runner.backend ray (the workers have no "
                "shared file); leave it out, or run locally"
            )
    with run_lock(run_dir), fewer_collections():
        store, scan = await prepare_run(
            settings, run_dir, input_path, prompt_field, limit, rerun_changed
        )
        cache: GenerationCache | None = None
        try:
            if settings.runner.cache is not None:
                cache = GenerationCache(settings.runner.cache)
            rebuild_results(run_dir, store)
            if settings.runner.backend == "ray":
                with results_file(run_dir) as results:
                    report = await run_on_ray(
                        settings, run_dir=run_dir, store=store, results=results,
                        input_path=input_path, prompt_field=prompt_field, limit=limit,
                        progress=progress, stop=stop, scan=scan, drain_s=drain_s,
                    )  # fmt: skip
            else:
                report = await _run_in(
                    settings, run_dir, store, input_path, prompt_field, limit, progress, stop,
                    cache, scan, drain_s,
                )  # fmt: skip
        except BaseException:
            close_run(run_dir, store, cache, quiet=True)  # the first error is the one to report
            raise
        close_run(run_dir, store, cache, quiet=False)
        return report


GC_YOUNG_THRESHOLD = 5000
"""Allocations between two young-generation collections during a run (Python's default: 700)."""

_gc_depth = 0  # runs in progress in this process that hold the setting below


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """For the length of a run: freeze what is already allocated (modules, settings) out of the
    collector's sight, and collect the young generation every `GC_YOUNG_THRESHOLD` allocations.

    A run allocates a stream of short-lived objects (requests, records, trees) while holding a
    large, long-lived heap; with the defaults the collector kept walking that heap (about a
    tenth of the engine's CPU per call, `benchmarks/engine_throughput.py`). Garbage is still
    collected, a little later; peak memory stays flat. The previous settings come back when the
    outermost run in the process ends.
    """
    global _gc_depth
    _gc_depth += 1
    if _gc_depth > 1:  # a run inside a run (a sweep): the outer one set it up
        try:
            yield
        finally:
            _gc_depth -= 1
        return
    saved = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *saved[1:])
    try:
        yield
    finally:
        _gc_depth -= 1
        gc.set_threshold(*saved)
        gc.unfreeze()


async def _run_in(
    settings: RunSettings,
    run_dir: Path,
    store: RunStore,
    input_path: Path,
    prompt_field: str | None,
    limit: int | None,
    progress: ProgressSink | None,
    stop: asyncio.Event | None,
    cache: GenerationCache | None,
    scan: InputScan,
    drain_s: float,
) -> RunReport:
    started = time.perf_counter()
    reward = await asyncio.to_thread(build_reward, settings)  # a model load must not block
    total, already_done = scan.total, scan.done
    if not total:
        logger.warning("%s holds no prompt to run: nothing was sent", input_path)
    if progress is not None:
        progress.started(total=total, already_done=already_done)
    async with AgentPool(settings.agents, seed=settings.seed) as pool:
        with results_file(run_dir) as results:
            state = RunSession(settings, run_dir, store, pool, reward, results, progress, cache)
            state.report.total = total
            try:
                state.report.interrupted = await feed_until_stopped(
                    _feed(state, store, input_path, prompt_field, limit), stop, state.gate, drain_s
                )
                if state.report.interrupted:
                    logger.warning(
                        "stopped: finished prompts are kept; `toa resume %s` continues", run_dir
                    )
            finally:
                await reward.aclose()
                state.report.wall_s = time.perf_counter() - started
    return state.report


def _releaser(
    tasks: set[asyncio.Task[None]], slots: asyncio.Semaphore, fatal: list[BaseException]
) -> Callable[[asyncio.Task[None]], None]:
    def release(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        slots.release()
        if not task.cancelled() and task.exception() is not None:
            fatal.append(task.exception())  # type: ignore[arg-type]

    return release


async def _feed(
    state: RunSession,
    store: RunStore,
    input_path: Path,
    prompt_field: str | None,
    limit: int | None,
) -> None:
    """Stream the input, start prompts under the in-flight bound, wait for them all."""
    slots = asyncio.Semaphore(state.settings.runner.prompts_in_flight)
    tasks: set[asyncio.Task[None]] = set()
    fatal: list[BaseException] = []  # what ended a prompt's task (a store that cannot write)
    try:
        for item in read_prompts(input_path, prompt_field=prompt_field, limit=limit):
            if isinstance(item, InputError):
                state.report.bad_rows += 1
                if state.progress is not None:
                    state.progress.bad_row(item)  # it shows the row; logging it too would repeat
                    logger.debug("skipped bad input row: %s", item)
                else:
                    logger.error("skipped bad input row: %s", item)
                continue
            if store.result_status(item.id) == "done":
                state.report.already_done += 1
                continue
            await slots.acquire()
            if fatal or state.gate.closed:  # no new prompt once stopping, or failed
                slots.release()
                break
            task = asyncio.create_task(_run_one(state, item), name=f"prompt:{item.id}")
            tasks.add(task)
            task.add_done_callback(_releaser(tasks, slots, fatal))
        if tasks and not fatal:
            await asyncio.gather(*tasks)
        if fatal:
            raise fatal[0]
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def _run_one(state: RunSession, prompt: Prompt) -> None:
    await state.run_prompt(prompt)
