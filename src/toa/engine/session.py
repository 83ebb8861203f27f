"""What the prompts of one run share, and the steps every backend takes around them.

`RunSession` runs one prompt's search into the run's records (`run_prompt`); `prepare_run`
checks a run's settings and input against its manifest and store and opens the store;
`close_run` commits and rewrites ``results.jsonl``; `feed_until_stopped` and `drain` make a clean
stop. `toa.engine.runner` drives them in this process, `toa.engine.ray_runner` over Ray actors,
`toa.serve` one request at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from toa import compact_json
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
from toa.engine.results import failed_result, tree_result
from toa.errors import InputError, StoreError
from toa.rewards import RewardModel
from toa.search.context import Strategy
from toa.search.priors import Prior, evidence_from_tree
from toa.search.tree import SearchTree
from toa.settings import RunSettings
from toa.store.cache import GenerationCache
from toa.store.layout import MANIFEST_NAME, RESULTS_NAME, STORE_NAME
from toa.store.manifest import build_manifest, check_resumable, read_manifest, write_manifest
from toa.store.run_files import rebuild_results
from toa.store.run_store import RecordSink, RunStore, StoreReader
from toa.store.writer import free_space
from toa.types import Prompt

__all__ = [
    "DRAIN_S",
    "ProgressSink",
    "PromptOutcome",
    "RunReport",
    "RunSession",
    "add_compute",
    "build_reward",
    "close_run",
    "drain",
    "feed_until_stopped",
    "learned_prior",
    "open_results",
    "prepare_run",
    "results_file",
    "starting_prior",
]

logger = logging.getLogger("toa.engine.runner")  # the runner's logger, as before the split

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


def learned_prior(store: RecordSink | StoreReader, agents: tuple[str, ...]) -> Prior:
    """What a run has learned: the evidence of its finished prompts, summed in finishing order
    (the order the run itself added it, so a resume continues with the same numbers)."""
    learned = Prior.empty(agents)
    for _prompt_id, evidence_json in store.iter_evidence():
        learned = learned + Prior.from_dict(json.loads(evidence_json))
    return learned


def starting_prior(store: RecordSink | StoreReader, settings: RunSettings) -> Prior:
    """What a run knows when it (re)starts: what its finished prompts taught (`learned_prior`),
    after the configured prior file when the source is online (a starting point)."""
    learned = learned_prior(store, tuple(a.name for a in settings.agents))
    if settings.prior_source == "online" and settings.prior is not None:
        learned = settings.prior + learned
    return learned


async def prepare_run(
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
        store: RecordSink,
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
        self.learned = starting_prior(store, settings)

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
            await self.store.submit_prior(prompt.id, prior.to_json())
            # The JSON holds exactly these numbers (floats round-trip, sums run in key order),
            # so this prompt's search and its resume, from the stored JSON, start alike.
            return prior
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
        line = compact_json.dumps_text(result, user_data=result.get("extra"))
        write = self.store.write_result(prompt_id, "done" if ok else "failed", line)
        # Counted before the wait: the write is queued when it starts, and a queued write is
        # committed even if a stop cancels this wait, so the report matches the store.
        if ok:
            self.report.finished += 1
        else:
            self.report.failed += 1
        add_compute(self.report.compute, compute)
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


def open_results(run_dir: Path) -> IO[str]:
    """results.jsonl, open for appending; a `StoreError` (nothing sent yet) when it cannot be."""
    path = run_dir / RESULTS_NAME
    try:
        return path.open("a", encoding="utf-8")
    except OSError as exc:
        raise StoreError(
            f"{path}: cannot open the results file ({exc.strerror or exc}; {free_space(path)} "
            f"free there); nothing was sent. Free space, then `toa resume {run_dir}`"
        ) from exc


@contextlib.contextmanager
def results_file(run_dir: Path) -> Iterator[IO[str]]:
    """`open_results`, closed at the end. A close that fails (the disk filled: the buffered
    line cannot be written) does not hide the error already on its way out; alone, it is a
    `StoreError`. The store holds every result, and results.jsonl is rebuilt from it."""
    handle = open_results(run_dir)
    try:
        yield handle
    except BaseException:
        with contextlib.suppress(OSError):
            handle.close()
        raise
    path = run_dir / RESULTS_NAME
    try:
        handle.close()
    except OSError as exc:
        raise StoreError(
            f"{path}: cannot write the last results ({exc.strerror or exc}; {free_space(path)} "
            f"free there): the store keeps them; free space, then `toa resume {run_dir}`"
        ) from exc


def add_compute(total: Compute, one: Compute) -> None:
    for name in (
        "calls", "failed_calls", "replayed_calls", "cached_calls", "missing_usage", "prompt_tokens",
        "completion_tokens", "flops", "cost_usd", "reward_calls", "failed_rewards",
    ):  # fmt: skip
        setattr(total, name, getattr(total, name) + getattr(one, name))


def close_run(
    run_dir: Path, store: RunStore, cache: GenerationCache | None, *, quiet: bool
) -> None:
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


async def feed_until_stopped(
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
            await drain(task, gate, drain_s)
    finally:
        for pending in (task, waiter):
            pending.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)
    if task.cancelled():
        return True
    task.result()  # re-raise what the feed raised
    return False


async def drain(task: asyncio.Task[None], gate: SpendGate, drain_s: float) -> None:
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
