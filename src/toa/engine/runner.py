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
import json
import logging
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from toa.agents import AgentPool
from toa.engine.context import Compute, PromptContext, SpendGate
from toa.engine.input_identity import (
    InputIdentity,
    InputScan,
    check_input,
    file_digest,
    prompt_hash,
    same_input,
    scan_input,
)
from toa.engine.preflight import check_start
from toa.engine.results import failed_result, tree_result
from toa.errors import InputError, StoreError
from toa.inputs.readers import read_prompts
from toa.rewards import RewardModel
from toa.search.context import Strategy
from toa.search.priors import Prior, evidence_from_tree
from toa.search.tree import SearchTree
from toa.settings import RunSettings
from toa.store.cache import GenerationCache
from toa.store.layout import MANIFEST_NAME, RESULTS_NAME, STORE_NAME
from toa.store.manifest import build_manifest, check_resumable, read_manifest, write_manifest
from toa.store.run_files import rebuild_results, run_lock
from toa.store.run_store import RunStore, StoreReader
from toa.store.writer import free_space
from toa.types import Prompt

__all__ = [
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

DRAIN_S = 10.0
"""How long a clean stop waits for the calls in flight to finish (seconds), by default."""


class ProgressSink(Protocol):
    """Receives progress events (the CLI draws them with rich; the library never prints)."""

    def started(self, *, total: int, already_done: int) -> None: ...

    def prompt_finished(self, prompt_id: str, compute: Compute, *, ok: bool) -> None: ...

    def bad_row(self, error: InputError) -> None: ...


@dataclass
class RunReport:
    """What a run did. `exit_code` is 0 only when the input held prompts, every row ran and
    nothing was interrupted (an input with no prompt at all, `total` 0, gives 1)."""

    run_dir: Path
    total: int = 0
    already_done: int = 0
    finished: int = 0
    failed: int = 0
    bad_rows: int = 0
    interrupted: bool = False
    wall_s: float = 0.0
    compute: Compute = field(default_factory=Compute)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.bad_rows or self.failed or not self.total else 0


def build_reward(settings: RunSettings) -> RewardModel:
    """The reward model the configuration names (one instance for the whole run)."""
    return settings.build_reward()


def learned_prior(store: StoreReader, agents: tuple[str, ...]) -> Prior:
    """What a run has learned: the evidence of its finished prompts, summed in finishing order
    (the order the run itself added it, so a resume continues with the same numbers)."""
    learned = Prior.empty(agents)
    for _prompt_id, evidence_json in store.iter_evidence():
        learned = learned + Prior.from_dict(json.loads(evidence_json))
    return learned


async def _prepare(
    settings: RunSettings,
    run_dir: Path,
    input_path: Path,
    field: str | None,
    limit: int | None,
    rerun_changed: bool,
) -> tuple[RunStore, InputScan]:
    """Check the settings and the input against the run's manifest and store (an existing run),
    apply what the input's changes call for, write the manifest; returns the open store and the
    input's counts. Everything that refuses does so before the manifest is rewritten."""
    new = build_manifest(settings, input_path=input_path, prompt_field=field)
    old = read_manifest(run_dir) if (run_dir / MANIFEST_NAME).exists() else None
    if old is not None:
        check_resumable(old, new)
        new["started"] = old.get("started", new["started"])
        new["resumed"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sha256, size = await asyncio.to_thread(file_digest, input_path)
    recorded = old.get("input") if old is not None else None
    recorded = recorded if isinstance(recorded, dict) else ({} if old is not None else None)
    changed = recorded is not None and not same_input(recorded, sha256, field)
    known = recorded.get("prompts") if recorded is not None and not changed else None
    store = RunStore(run_dir / STORE_NAME)
    try:
        scan = await asyncio.to_thread(
            scan_input,
            store,
            input_path,
            field,
            limit,
            compare=changed,
            count_all=not isinstance(known, int),
        )
        prompts = known if isinstance(known, int) else scan.prompts
        identity = InputIdentity(new["input"]["path"], field, sha256, size, prompts)
        if recorded is not None:
            check_input(recorded, identity, scan, run_dir=run_dir, rerun_changed=rerun_changed)
            discards = [store.submit_discard(pid) for pid in (*scan.edited, *scan.restarted)]
            if discards:
                await asyncio.gather(*discards)
        new["input"] = identity.to_dict()
        write_manifest(run_dir, new)
    except BaseException:
        store.close()
        raise
    return store, scan


@dataclass(frozen=True)
class PromptOutcome:
    """One prompt's search as `RunSession.run_prompt` finished it: the result (as written to
    the store and ``results.jsonl``), its tree (None when the search failed) and whether it
    succeeded."""

    result: dict[str, Any]
    tree: SearchTree | None
    ok: bool


class RunSession:
    """What the prompts of one run share: settings, store, agent pool, reward, results file,
    spend gate and what the run has learned. `run` makes one per run; `toa serve` one per
    serve directory, searching each request's messages with `run_prompt`."""

    def __init__(
        self,
        settings: RunSettings,
        run_dir: Path,
        store: RunStore,
        pool: AgentPool,
        reward: RewardModel,
        results: IO[str],
        progress: ProgressSink | None,
        cache: GenerationCache | None = None,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.store = store
        self.pool = pool
        self.reward = reward
        self.results = results
        self.progress = progress
        self.report = RunReport(run_dir=run_dir)
        self.gate = SpendGate()
        self.prices = dict(settings.prices)
        self.learned = learned_prior(store, tuple(a.name for a in settings.agents))
        if settings.prior_source == "online" and settings.prior is not None:
            self.learned = settings.prior + self.learned  # a starting point, then the run's own

    async def prior_for(self, prompt: Prompt) -> Prior | None:
        """The prior this prompt's search starts from: the one stored with it (a resume),
        else a snapshot of what the run has learned (or the prior file), stored before the
        prompt's first call. None when the run uses no prior."""
        source = self.settings.prior_source
        if source == "none":
            return None
        stored = self.store.prior_for(prompt.id)
        if stored is None:
            prior = self.learned if source == "online" else self.settings.prior
            assert prior is not None  # source 'file' has one (config checks)
            stored = prior.to_json()
            await self.store.submit_prior(prompt.id, stored)
        # What the store holds, parsed: a resume starts from exactly the same numbers.
        return Prior.from_dict(json.loads(stored))

    async def run_prompt(
        self, prompt: Prompt, *, strategy: Strategy | None = None, budget: int | None = None
    ) -> PromptOutcome:
        """Search `prompt` (the run's strategy and budget unless given), store every call, its
        tree, evidence and result, append the result to ``results.jsonl``. A failed search is
        a failed result (logged); a `StoreError` and a cancellation propagate."""
        ctx = PromptContext(
            prompt,
            pool=self.pool,
            reward=self.reward,
            store=self.store,
            run_seed=self.settings.seed,
            prices=self.prices,
            stored_calls=self.store.calls_for(prompt.id),
            stored_rewards=self.store.rewards_for(prompt.id),
            stored_spares=self.store.spare_calls_for(prompt.id),
            cache=self.cache,
            gate=self.gate,
        )
        started = time.perf_counter()
        strategy = strategy if strategy is not None else self.settings.strategy
        budget = budget if budget is not None else self.settings.budget
        try:
            # Queued before its first call, like the prior: a resume can tell an edited prompt.
            hashed = self.store.submit_prompt_hash(prompt.id, prompt_hash(prompt))
            prior = await self.prior_for(prompt)
            await hashed
            tree = await strategy.run(
                prompt, ctx, budget=budget, seed=self.settings.seed, prior=prior
            )
            await ctx.flush()
        except (asyncio.CancelledError, StoreError):
            raise  # a store that cannot write stops the whole run (see `_feed`)
        except Exception as exc:
            logger.exception("prompt %r: the %s search failed", prompt.id, strategy.name)
            await ctx.flush()  # its calls were paid for: keep them (a StoreError propagates)
            ctx.compute.wall_s = time.perf_counter() - started
            failed = failed_result(prompt, strategy.name, exc, ctx.compute)
            await self._finish(prompt.id, failed, ctx.compute, ok=False)
            return PromptOutcome(failed, None, False)
        ctx.compute.wall_s = time.perf_counter() - started
        evidence = evidence_from_tree(tree)
        self.learned = self.learned + evidence
        # Queued before the result: a prompt with a result always has its tree (the record
        # export and reports read) and its evidence stored.
        tree_written = self.store.submit_tree(prompt.id, tree.to_dict())
        evidence_written = self.store.submit_evidence(prompt.id, evidence.to_json())
        result = tree_result(prompt, tree, ctx.compute)
        await self._finish(prompt.id, result, ctx.compute, ok=True)
        await tree_written
        await evidence_written
        return PromptOutcome(result, tree, True)

    async def _finish(
        self, prompt_id: str, result: dict[str, Any], compute: Compute, *, ok: bool
    ) -> None:
        line = json.dumps(result, ensure_ascii=False)
        write = self.store.write_result(prompt_id, "done" if ok else "failed", line)
        # Counted before the wait: the write is queued when it starts, and a queued write is
        # committed even if a stop cancels this wait, so the report matches the store.
        if ok:
            self.report.finished += 1
        else:
            self.report.failed += 1
        _add(self.report.compute, compute)
        await write
        try:
            self.results.write(line + "\n")
            self.results.flush()
        except OSError as exc:  # the store has the result; results.jsonl is rebuilt from it
            path = self.report.run_dir / RESULTS_NAME
            raise StoreError(
                f"{path}: cannot append a result ({exc.strerror or exc}; {free_space(path)} "
                f"free there): the store keeps it; free space, then `toa resume "
                f"{self.report.run_dir}`"
            ) from exc
        if self.progress is not None:
            self.progress.prompt_finished(prompt_id, compute, ok=ok)


def _open_results(run_dir: Path) -> IO[str]:
    """results.jsonl, open for appending; a `StoreError` (nothing sent yet) when it cannot be."""
    path = run_dir / RESULTS_NAME
    try:
        return path.open("a", encoding="utf-8")
    except OSError as exc:
        raise StoreError(
            f"{path}: cannot open the results file ({exc.strerror or exc}; {free_space(path)} "
            f"free there); nothing was sent. Free space, then `toa resume {run_dir}`"
        ) from exc


def _add(total: Compute, one: Compute) -> None:
    for name in (
        "calls", "failed_calls", "replayed_calls", "cached_calls", "missing_usage", "prompt_tokens",
        "completion_tokens", "flops", "cost_usd", "reward_calls", "failed_rewards",
    ):  # fmt: skip
        setattr(total, name, getattr(total, name) + getattr(one, name))


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
    with run_lock(run_dir):
        store, scan = await _prepare(
            settings, run_dir, input_path, prompt_field, limit, rerun_changed
        )
        cache: GenerationCache | None = None
        try:
            if settings.runner.cache is not None:
                cache = GenerationCache(settings.runner.cache)
            rebuild_results(run_dir, store)
            report = await _run_in(
                settings, run_dir, store, input_path, prompt_field, limit, progress, stop, cache,
                scan, drain_s,
            )  # fmt: skip
        except BaseException:
            _close(run_dir, store, cache, quiet=True)  # the first error is the one to report
            raise
        _close(run_dir, store, cache, quiet=False)
        return report


def _close(run_dir: Path, store: RunStore, cache: GenerationCache | None, *, quiet: bool) -> None:
    """Commit what is queued, rewrite results.jsonl from the store, close the files."""
    try:
        store.flush()
        rebuild_results(run_dir, store)
    except StoreError as exc:
        if not quiet:
            raise
        logger.error("%s", exc)
    finally:
        store.close()
        if cache is not None:
            cache.close()


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
        with _open_results(run_dir) as results:
            state = RunSession(settings, run_dir, store, pool, reward, results, progress, cache)
            state.report.total = total
            try:
                state.report.interrupted = await _feed_until_stopped(
                    _feed(state, input_path, prompt_field, limit), stop, state.gate, drain_s
                )
                if state.report.interrupted:
                    logger.warning(
                        "stopped: finished prompts are kept; `toa resume %s` continues", run_dir
                    )
            finally:
                await reward.aclose()
                state.report.wall_s = time.perf_counter() - started
    return state.report


async def _feed_until_stopped(
    feed: Coroutine[Any, Any, None], stop: asyncio.Event | None, gate: SpendGate, drain_s: float
) -> bool:
    """Run `feed` to the end, or until `stop` is set; True when stopped.

    A stop closes the gate (nothing new is sent), waits up to `drain_s` for the calls in flight
    to finish and be queued to the store, then cancels the feed and its prompts. Cancelling the
    caller cancels `feed` too and propagates: only `stop` is a clean stop.
    """
    task = asyncio.create_task(feed)
    if stop is None:
        await task
        return False
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await _drain(task, gate, drain_s)
    finally:
        for pending in (task, waiter):
            pending.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)
    if task.cancelled():
        return True
    task.result()  # re-raise what the feed raised
    return False


async def _drain(task: asyncio.Task[None], gate: SpendGate, drain_s: float) -> None:
    """Close the gate and give the calls in flight up to `drain_s` to finish."""
    gate.close()
    if gate.in_flight:
        logger.warning(
            "stopping: no new request is sent; waiting up to %.0f s for the %d in flight",
            drain_s,
            gate.in_flight,
        )
    drained = asyncio.create_task(gate.wait_idle())
    try:
        await asyncio.wait({task, drained}, timeout=drain_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        drained.cancel()
    if gate.in_flight:
        logger.warning("stopping: %d call(s) still in flight are abandoned", gate.in_flight)


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
    state: RunSession, input_path: Path, prompt_field: str | None, limit: int | None
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
            if state.store.result_status(item.id) == "done":
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
