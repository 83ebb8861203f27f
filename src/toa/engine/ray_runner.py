"""The Ray backend: one run's prompts searched by a pool of Ray actors, the run directory on the
driver only.

The driver (`run_on_ray`, called by `toa.engine.runner.run` for ``runner.backend: ray``) streams
the input, and hands each unfinished prompt to the least busy `PromptWorker` actor with what the
run's store holds for it (its calls, rewards and spare calls to replay, and its prior, stored by
the driver first). Each worker runs the same engine as a local run (`RunSession.run_prompt`:
strategies, context, client, accounting) over its share of every agent's limits
(``max_concurrency`` and ``requests_per_minute`` divided by the number of workers, so the
cluster never exceeds them), into a `RecordBuffer` instead of a store. The driver collects every
worker's records every `POLL_S` seconds and writes them to the run's store in the order they
were made (calls before their prompt's result), so a killed driver loses at most that window,
and `toa resume` (local or Ray) replays what is stored exactly as for a local run.

A worker that dies (the actor crashed, its node was lost) costs only what it had not handed
over yet: a new worker takes its place and its unfinished prompts start again from what the
store holds. A clean stop closes every worker's spending gate, gives the calls in flight up to
``drain_s`` to finish and be collected, then stops the workers.

No shared filesystem is needed; the workers need the same TOA installed. Ray is an optional
extra (``toa-synth[ray]``); it is imported only here, with its usage statistics off.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from toa.agents import AgentPool
from toa.config import parse_config
from toa.engine.accounting import Compute
from toa.engine.input_identity import InputScan
from toa.engine.results import failed_result
from toa.engine.session import (
    ProgressSink,
    RunReport,
    RunSession,
    add_compute,
    starting_prior,
)
from toa.errors import ConfigError, InputError, StoreError
from toa.inputs.readers import read_prompts
from toa.rewards import RewardModel
from toa.search.priors import Prior
from toa.settings import RunSettings
from toa.store.layout import RESULTS_NAME
from toa.store.run_store import CallRecord, ResultStatus, RewardRecord, RunStore
from toa.types import Prompt, Score

__all__ = [
    "NAMESPACE",
    "POLL_S",
    "PromptPayload",
    "PromptWorker",
    "RecordBuffer",
    "RemoteReward",
    "RewardServer",
    "check_ray",
    "run_on_ray",
]

logger = logging.getLogger(__name__)

POLL_S = 0.2
"""How often the driver collects the workers' records (seconds): what a killed driver loses."""
NAMESPACE = "toa"
"""The Ray namespace of the workers (named ``toa-<run token>-w<i>``)."""


def import_ray() -> Any:
    """The `ray` module, with its usage statistics off; `ConfigError` when it is missing."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never reports to the network
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # no FutureWarning
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "runner.backend is ray, but Ray is not installed: pip install 'toa-synth[ray]'"
        ) from None
    return ray


def check_ray(address: str | None) -> None:
    """Before any call: Ray is importable, and a HOST:PORT address accepts connections."""
    import_ray()
    if address is None or address == "auto" or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"runner.address {address!r}: expected auto or HOST:PORT (the Ray head's GCS port)"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            pass
    except OSError as exc:
        raise ConfigError(
            f"runner.address {address}: no Ray head answers there ({exc.strerror or exc}); "
            "start one (`ray start --head`) or fix the address"
        ) from None


@dataclass(frozen=True)
class PromptPayload:
    """A prompt handed to a worker, with what the run's store holds for it."""

    prompt: Prompt
    calls: dict[int, CallRecord] = field(default_factory=dict)
    rewards: dict[int, RewardRecord] = field(default_factory=dict)
    spares: list[CallRecord] = field(default_factory=list)
    prior: str | None = None


class RecordBuffer:
    """A worker's `RecordSink`: reads come from the prompts' payloads, writes are kept in order
    until the driver takes them (`take`)."""

    failure: StoreError | None = None

    def __init__(self) -> None:
        self.records: list[tuple[str, tuple[Any, ...]]] = []
        self.payloads: dict[str, PromptPayload] = {}

    def calls_for(self, prompt_id: str) -> dict[int, CallRecord]:
        return dict(self.payloads[prompt_id].calls)

    def spare_calls_for(self, prompt_id: str) -> list[CallRecord]:
        return list(self.payloads[prompt_id].spares)

    def rewards_for(self, prompt_id: str) -> dict[int, RewardRecord]:
        return dict(self.payloads[prompt_id].rewards)

    def prior_for(self, prompt_id: str) -> str | None:
        return self.payloads[prompt_id].prior

    def iter_evidence(self, page_size: int = 256) -> Any:
        return iter(())  # the driver learns; a worker gets each prompt's prior with it

    def _keep(self, kind: str, *args: Any) -> asyncio.Future[None]:
        self.records.append((kind, args))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    def submit_call(self, rec: CallRecord) -> asyncio.Future[None]:
        return self._keep("call", rec)

    def submit_spare_call(self, rec: CallRecord) -> asyncio.Future[None]:
        return self._keep("spare", rec)

    def submit_reward(self, rec: RewardRecord) -> asyncio.Future[None]:
        return self._keep("reward", rec)

    def submit_prior(self, prompt_id: str, prior_json: str) -> asyncio.Future[None]:
        return self._keep("prior", prompt_id, prior_json)

    def submit_prompt_hash(self, prompt_id: str, prompt_hash: str) -> asyncio.Future[None]:
        return self._keep("hash", prompt_id, prompt_hash)

    def submit_tree(self, prompt_id: str, tree: dict[str, Any]) -> asyncio.Future[None]:
        return self._keep("tree", prompt_id, tree)

    def submit_evidence(self, prompt_id: str, evidence_json: str) -> asyncio.Future[None]:
        return self._keep("evidence", prompt_id, evidence_json)

    async def write_result(self, prompt_id: str, status: ResultStatus, result_json: str) -> None:
        self.records.append(("result", (prompt_id, status, result_json)))
        self.payloads.pop(prompt_id, None)

    def take(self) -> list[tuple[str, tuple[Any, ...]]]:
        records, self.records = self.records, []
        return records


class _Discard(io.StringIO):
    """The results file of a worker: the driver writes the run's results.jsonl."""

    def write(self, text: str) -> int:
        return len(text)


def worker_settings(settings: RunSettings, workers: int, index: int = 0) -> RunSettings:
    """`settings` for worker `index` of `workers`: each agent's limits divided among them so
    that the shares add up to the run's limits exactly (concurrency: the remainder goes to the
    first workers; a replacement worker takes its predecessor's index and share).

    Split limits, not one limiter actor: a shared limiter would cost two actor round trips per
    request (see ``benchmarks/ray_scaling.py``, ``limiter_pairs_per_s``), the split costs none;
    its price is that a worker's unused share stays unused while it has no prompts left.
    """
    agents = tuple(
        replace(
            a,
            max_concurrency=a.max_concurrency // workers
            + (1 if index < a.max_concurrency % workers else 0),
            requests_per_minute=(
                None if a.requests_per_minute is None else a.requests_per_minute / workers
            ),
        )
        for a in settings.agents
    )
    return replace(settings, agents=agents)


def check_limits(settings: RunSettings) -> None:
    """Before any call: every agent's `max_concurrency` leaves each worker at least one slot."""
    workers = settings.runner.workers
    for agent in settings.agents:
        if agent.max_concurrency < workers:
            raise ConfigError(
                f"agent {agent.name!r}: max_concurrency {agent.max_concurrency} cannot be split "
                f"over {workers} Ray workers (each needs at least one request in flight, and "
                "the limit holds for the whole cluster); raise max_concurrency or use fewer "
                "workers (--workers)"
            )


class RewardServer:
    """The run's reward in one Ray actor (``runner.reward_placement: ray``): loaded once (on
    the GPUs the actor was given), called by every worker; rewards with a model or a server
    behind them batch the concurrent calls of all workers (`toa.rewards.batching`)."""

    def __init__(self, config_data: Mapping[str, Any], source: str) -> None:
        self.settings = parse_config(dict(config_data), source=source)
        self.reward: RewardModel | None = None

    async def score(self, prompt: Prompt, responses: list[str]) -> list[Any]:
        if self.reward is None:
            self.reward = await asyncio.to_thread(self.settings.build_reward)
        return await self.reward.score(prompt, responses)

    async def close(self) -> None:
        if self.reward is not None:
            await self.reward.aclose()


class RemoteReward:
    """A worker's `RewardModel` that asks the run's `RewardServer` actor."""

    def __init__(self, actor: Any, name: str) -> None:
        self._actor = actor
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def score(self, prompt: Prompt, responses: Sequence[str]) -> list[Score]:
        scores: list[Score] = await self._actor.score.remote(prompt, list(responses))
        return scores

    async def aclose(self) -> None:
        return None


class PromptWorker:
    """One Ray actor's engine (see the module docstring); made a Ray actor by `run_on_ray`."""

    def __init__(
        self,
        config_data: Mapping[str, Any],
        source: str,
        workers: int,
        index: int = 0,
        reward_actor: Any = None,
    ) -> None:
        settings = parse_config(dict(config_data), source=source)
        self.settings = worker_settings(settings, workers, index)
        self._reward_actor = reward_actor
        self.buffer = RecordBuffer()
        self._session: RunSession | None = None
        self._pool: AgentPool | None = None
        self._reward: RewardModel | None = None
        self._opening: asyncio.Lock | None = None

    async def _open(self) -> RunSession:
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._session is None:
                if self._reward_actor is not None:
                    kind = str(self.settings.config_data.get("reward", {}).get("type"))
                    self._reward = RemoteReward(self._reward_actor, kind)
                else:
                    self._reward = await asyncio.to_thread(self.settings.build_reward)
                self._pool = AgentPool(self.settings.agents, seed=self.settings.seed)
                await self._pool.open()
                results: IO[str] = _Discard()
                self._session = RunSession(
                    self.settings, Path("<ray worker>"), self.buffer, self._pool, self._reward,
                    results, None, None,
                )  # fmt: skip
        return self._session

    async def run(self, payload: PromptPayload) -> str:
        """Search one prompt into the buffer; its id."""
        session = await self._open()
        self.buffer.payloads[payload.prompt.id] = payload
        await session.run_prompt(payload.prompt)
        return payload.prompt.id

    def poll(self) -> list[tuple[str, tuple[Any, ...]]]:
        """The records made since the last poll, in order."""
        return self.buffer.take()

    async def stop(self, drain_s: float) -> int:
        """Close the spending gate and wait up to `drain_s` for the calls in flight; the number
        still in flight after that."""
        if self._session is None:
            return 0
        gate = self._session.gate
        gate.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gate.wait_idle(), timeout=drain_s)
        return gate.in_flight

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        if self._reward is not None:
            await self._reward.aclose()


@dataclass
class _Slot:
    """A worker actor and the prompts it holds."""

    index: int
    actor: Any
    prompts: set[str] = field(default_factory=set)
    alive: bool = True


class _Driver:
    """The driver's state for one Ray run."""

    def __init__(
        self,
        ray: Any,
        settings: RunSettings,
        run_dir: Path,
        store: RunStore,
        results: IO[str],
        progress: ProgressSink | None,
        report: RunReport,
    ) -> None:
        self.ray = ray
        self.settings = settings
        self.run_dir = run_dir
        self.store = store
        self.results = results
        self.progress = progress
        self.report = report
        self.token = secrets.token_hex(3)
        self.slots: list[_Slot] = []
        self.payload_of: dict[str, Prompt] = {}  # dispatched, without a result yet
        self.room = asyncio.Semaphore(settings.runner.prompts_in_flight)
        self.learned = starting_prior(store, settings)
        self.stopping = False  # set once the run stops: a worker's death then changes nothing
        self.spawned = 0
        self.watches: set[asyncio.Task[None]] = set()
        self.reward_actor: Any = None
        if settings.runner.reward_placement == "ray":
            remote = ray.remote(
                num_cpus=0, num_gpus=settings.runner.reward_num_gpus, max_concurrency=10_000
            )(RewardServer)
            self.reward_actor = remote.options(
                name=f"toa-{self.token}-reward", namespace=NAMESPACE
            ).remote(settings.config_data, settings.source)

    # ------------------------------------------------------------------------- workers

    def spawn(self, index: int) -> _Slot:
        remote = self.ray.remote(num_cpus=0, max_restarts=0, max_concurrency=10_000)(PromptWorker)
        actor = remote.options(
            name=f"toa-{self.token}-w{index}-{self.spawned}", namespace=NAMESPACE
        ).remote(
            self.settings.config_data, self.settings.source, self.settings.runner.workers, index,
            self.reward_actor,
        )  # fmt: skip
        self.spawned += 1
        return _Slot(index, actor)

    def _slot_for(self) -> _Slot:
        live = [s for s in self.slots if s.alive]
        return min(live, key=lambda s: (len(s.prompts), s.index))

    # ---------------------------------------------------------------------- dispatching

    async def _payload(self, prompt: Prompt) -> PromptPayload:
        prior = self.store.prior_for(prompt.id)
        source = self.settings.prior_source
        if prior is None and source != "none":
            chosen = self.learned if source == "online" else self.settings.prior
            assert chosen is not None
            prior = chosen.to_json()
            await self.store.submit_prior(prompt.id, prior)
        return PromptPayload(
            prompt,
            calls=self.store.calls_for(prompt.id),
            rewards=self.store.rewards_for(prompt.id),
            spares=self.store.spare_calls_for(prompt.id),
            prior=prior,
        )

    async def dispatch(self, prompt: Prompt) -> None:
        payload = await self._payload(prompt)
        slot = self._slot_for()
        slot.prompts.add(prompt.id)
        self.payload_of[prompt.id] = prompt
        ref = slot.actor.run.remote(payload)
        watch = asyncio.get_running_loop().create_task(self._watch(prompt.id, slot, ref))
        self.watches.add(watch)
        watch.add_done_callback(self.watches.discard)

    async def _watch(self, prompt_id: str, slot: _Slot, ref: Any) -> None:
        """Wait for a prompt's search; a dead worker is replaced and its prompts start again."""
        try:
            await ref
        except self.ray.exceptions.RayActorError:
            if prompt_id in self.payload_of and not self.stopping:
                await self._lost(slot)
        except Exception as exc:  # the worker turns search failures into results: not this
            if prompt_id in self.payload_of and not self.stopping:
                logger.error("prompt %r: the ray worker failed: %s", prompt_id, exc)
                prompt = self.payload_of[prompt_id]
                result = failed_result(prompt, self.settings.strategy_name, exc, Compute())
                failed = json.dumps(result)
                await self.store.write_result(prompt_id, "failed", failed)
                self._result(slot, prompt_id, "failed", failed)

    async def _lost(self, slot: _Slot) -> None:
        if not slot.alive:
            return
        slot.alive = False
        orphans = sorted(p for p in slot.prompts if p in self.payload_of)
        logger.warning(
            "ray worker %d died; %d unfinished prompt(s) go to a new worker (their stored calls "
            "are replayed)",
            slot.index,
            len(orphans),
        )
        replacement = self.spawn(slot.index)
        self.slots[self.slots.index(slot)] = replacement
        # What the dead worker handed over is committed before its prompts' stored calls are
        # read for the new worker: a call collected but not yet committed would be paid twice.
        await asyncio.to_thread(self.store.flush)
        for prompt_id in orphans:
            await self.dispatch(self.payload_of[prompt_id])

    # ------------------------------------------------------------------------ collecting

    async def collect(self) -> None:
        """Take every live worker's records and write them to the store, in order."""
        slots = [s for s in self.slots if s.alive]
        batches = await asyncio.gather(
            *(s.actor.poll.remote() for s in slots), return_exceptions=True
        )
        # Every polled record is queued before the first wait: the batches have left the
        # workers' buffers, and a stop that cancels this halfway must not drop the rest of them
        # (a resume would pay for them again). Then the results are awaited and counted.
        lost: list[_Slot] = []
        results: list[tuple[_Slot, str, str, str, asyncio.Future[None]]] = []
        for slot, batch in zip(slots, batches, strict=True):
            if isinstance(batch, BaseException):
                if isinstance(batch, self.ray.exceptions.RayActorError):
                    lost.append(slot)
                    continue
                raise batch
            self._queue(slot, batch, results)
        for slot, prompt_id, status, line, written in results:
            await written
            self._result(slot, prompt_id, status, line)
        if self.store.failure is not None:
            raise StoreError(f"{self.store.failure} (stopped before sending more requests)")
        for slot in lost:
            await self._lost(slot)

    def _queue(
        self,
        slot: _Slot,
        batch: list[tuple[str, tuple[Any, ...]]],
        results: list[tuple[_Slot, str, str, str, asyncio.Future[None]]],
    ) -> None:
        """Queue one worker's polled records to the store, in order; its results join
        `results` (with their commit's future)."""
        store = self.store
        for kind, args in batch:
            if kind == "call":
                store.submit_call(*args)
            elif kind == "spare":
                store.submit_spare_call(*args)
            elif kind == "reward":
                store.submit_reward(*args)
            elif kind == "prior":
                store.submit_prior(*args)
            elif kind == "hash":
                store.submit_prompt_hash(*args)
            elif kind == "tree":
                store.submit_tree(*args)
            elif kind == "evidence":
                store.submit_evidence(*args)
                self.learned = self.learned + Prior.from_dict(json.loads(args[1]))
            elif kind == "result":
                prompt_id, status, line = args
                if prompt_id not in self.payload_of or any(r[1] == prompt_id for r in results):
                    continue  # a second copy (a prompt re-dispatched after a false alarm)
                written = store.submit_result(
                    prompt_id, "done" if status == "done" else "failed", line
                )
                results.append((slot, prompt_id, status, line, written))

    def _result(self, slot: _Slot, prompt_id: str, status: str, line: str) -> None:
        """Account for a committed result: the report, results.jsonl, the in-flight bound."""
        compute = Compute(**_compute_fields(json.loads(line).get("compute") or {}))
        if status == "done":
            self.report.finished += 1
        else:
            self.report.failed += 1
        add_compute(self.report.compute, compute)
        try:
            self.results.write(line + "\n")
            self.results.flush()
        except OSError as exc:
            path = self.run_dir / RESULTS_NAME
            raise StoreError(
                f"{path}: cannot append a result ({exc.strerror or exc}): the store keeps it; "
                f"free space, then `toa resume {self.run_dir}`"
            ) from exc
        del self.payload_of[prompt_id]
        slot.prompts.discard(prompt_id)
        self.room.release()
        if self.progress is not None:
            self.progress.prompt_finished(prompt_id, compute, ok=status == "done")


def _compute_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    known = set(Compute.__dataclass_fields__)
    return {k: v for k, v in data.items() if k in known and k != "by_agent"}


async def run_on_ray(
    settings: RunSettings,
    *,
    run_dir: Path,
    store: RunStore,
    results: IO[str],
    input_path: Path,
    prompt_field: str | None,
    limit: int | None,
    progress: ProgressSink | None,
    stop: asyncio.Event | None,
    scan: InputScan,
    drain_s: float,
) -> RunReport:
    """Run the unfinished prompts of `input_path` on Ray workers (see the module docstring)."""
    ray = import_ray()
    started = time.perf_counter()
    report = RunReport(run_dir=run_dir)
    report.total = scan.total
    own = not ray.is_initialized()
    if own:
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "configure_logging": False,
        }
        address = settings.runner.address
        if address is None:
            kwargs["_node_ip_address"] = "127.0.0.1"  # a local Ray: loopback only
        ray.init(address=address, **kwargs)  # in this thread: Ray sets its signal handlers
    driver = _Driver(ray, settings, run_dir, store, results, progress, report)
    if progress is not None:
        progress.started(total=scan.total, already_done=scan.done)
    collector: asyncio.Task[None] | None = None
    try:
        driver.slots = [driver.spawn(i) for i in range(settings.runner.workers)]

        collecting = True

        async def collect_forever() -> None:
            while collecting:
                await asyncio.sleep(POLL_S)
                await driver.collect()

        collector = asyncio.create_task(collect_forever())
        stopped = await _feed(driver, input_path, prompt_field, limit, stop, collector)
        if stopped:
            driver.stopping = True
            logger.warning("stopping: no new request is sent; waiting up to %.0f s", drain_s)
            left = await asyncio.gather(
                *(s.actor.stop.remote(drain_s) for s in driver.slots if s.alive),
                return_exceptions=True,
            )
            abandoned = sum(n for n in left if isinstance(n, int))
            if abandoned:
                logger.warning("stopping: %d call(s) still in flight are abandoned", abandoned)
            report.interrupted = True
        collecting = False  # it ends after the round in progress: never halfway through one
        await asyncio.gather(collector, return_exceptions=True)
        await driver.collect()  # the last records (the stop's drained calls included)
    finally:
        if collector is not None and not collector.done():
            collector.cancel()
            await asyncio.gather(collector, return_exceptions=True)
        driver.stopping = True
        for watch in list(driver.watches):
            watch.cancel()
        if driver.watches:
            await asyncio.gather(*driver.watches, return_exceptions=True)
        closing = [s.actor.close.remote() for s in driver.slots if s.alive]
        if closing:
            await asyncio.gather(*closing, return_exceptions=True)
        for slot in driver.slots:
            ray.kill(slot.actor, no_restart=True)
        if driver.reward_actor is not None:
            await asyncio.gather(driver.reward_actor.close.remote(), return_exceptions=True)
            ray.kill(driver.reward_actor, no_restart=True)
        if own:
            ray.shutdown()
        report.wall_s = time.perf_counter() - started
    if report.interrupted:
        logger.warning("stopped: finished prompts are kept; `toa resume %s` continues", run_dir)
    return report


async def _feed(
    driver: _Driver,
    input_path: Path,
    prompt_field: str | None,
    limit: int | None,
    stop: asyncio.Event | None,
    collector: asyncio.Task[None],
) -> bool:
    """Dispatch the unfinished prompts under the in-flight bound and wait for their results;
    True when `stop` was set first."""
    report = driver.report
    for item in read_prompts(input_path, prompt_field=prompt_field, limit=limit):
        if isinstance(item, InputError):
            report.bad_rows += 1
            if driver.progress is not None:
                driver.progress.bad_row(item)
            else:
                logger.error("skipped bad input row: %s", item)
            continue
        if driver.store.result_status(item.id) == "done":
            report.already_done += 1
            continue
        if await _wait(driver.room.acquire(), stop, collector):
            return True
        await driver.dispatch(item)
    while driver.payload_of:
        if await _wait(asyncio.sleep(POLL_S), stop, collector):
            return True
    return False


async def _wait(step: Any, stop: asyncio.Event | None, collector: asyncio.Task[None]) -> bool:
    """Await `step`; True when `stop` was set first. A failed collector (the store) raises."""
    task = asyncio.ensure_future(step)
    waiters: set[asyncio.Future[Any]] = {task, collector}
    stopper = asyncio.ensure_future(stop.wait()) if stop is not None else None
    if stopper is not None:
        waiters.add(stopper)
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if stopper is not None:
            stopper.cancel()
    if collector.done():
        collector.result()  # raises what stopped it
    if task.done():
        task.result()
        return False
    task.cancel()
    return True
