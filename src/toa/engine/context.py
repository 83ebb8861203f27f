"""The context strategies call: agent calls, rewards, accounting, storage and replay.

One `PromptContext` per prompt implements `toa.search.SearchContext`. It is the only place where
a strategy's request turns into I/O, identically for every strategy:

* `generate` sends the call through the agent's client (retries, limits, breakers live there),
  with a per-request ``seed`` (see "Seeds" below) so seeded servers give reproducible samples; it
  counts calls, tokens, FLOPs (2 x parameters x tokens) and cost, and queues the outcome to the
  run store the moment it arrives (the writer commits it within one group commit, a few
  milliseconds); the strategy goes on meanwhile. `flush` waits for every queued record of the
  prompt, and the runner calls it before the prompt's result is written.
* `score` asks the reward model for every response not scored before, and stores each result.
* On resume, a call already stored for the same tree position (prompt id, node id) with the same
  agent and the same request hash is replayed from the store instead of being sent again; a
  stored failure replays as the same failure, so the rebuilt tree follows the original path.
  When the rebuilt tree takes another path anyway (an agent's breaker was open in the first run
  and is closed now, say), a request identical to a successful stored one (the same request hash,
  seed included) is still replayed, from wherever it sat in the old tree, and stored again as
  this node's call; likewise a stored score of the same response text. Nothing answered before is
  paid for twice, whatever the path.
* With a `GenerationCache` (opt-in, shared across runs), a call not in the run store is looked up
  there by its request hash; a hit sends no request, counts in `Compute.cached_calls` (and its
  tokens, FLOPs and cost count as usual, so strategies compare alike) and is stored as the
  node's call. Every successful generation is written to the cache.

Seeds: a request's seed is derived from (run seed, prompt id, request key, occurrence), where the
request key is the request hash without a seed (agent, model, mode, template, messages, sampling)
and the occurrence is how many earlier `generate` calls of this context had the same key (the
sample index: 0, 1, 2, ...). Identical requests are therefore identical samples wherever they sit
in a tree, in any strategy: every request ensemble makes at budget 4 it also makes at budget 8,
random's samples are ensemble's samples of the same agent, and TOA's fresh calls are ensemble's.
A resumed tree makes the same calls in the same order, so occurrences and seeds match and the
stored calls replay. The request hash stored with a call (and used by the cache) includes the
seed.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from toa.agents import AgentPool
from toa.agents.spec import AgentSpec
from toa.engine.accounting import AgentCompute, Compute
from toa.errors import AgentError, AgentUnavailableError, ReplayedFailure, StoreError
from toa.rewards.base import RewardModel
from toa.settings import Price
from toa.store.cache import CachedGeneration, GenerationCache
from toa.store.records import (
    RequestIdentity,
    call_seed,
    failed_record,
    messages_json,
    ok_record,
    replayed_score,
    request_hash,
    request_key,
    text_hash,
)
from toa.store.run_store import CallRecord, RecordSink, RewardRecord
from toa.types import (
    Completion,
    Message,
    Prompt,
    Score,
    ScoreFailure,
    Usage,
)

__all__ = [
    "AgentCompute",
    "Compute",
    "PromptContext",
    "SpendGate",
    "call_seed",
    "request_hash",
    "request_key",
]


class SpendGate:
    """What every request and reward call of a run passes through, so a stop can drain them.

    `close` (a clean stop: Ctrl-C, SIGTERM) lets nothing new through: a call arriving at the gate
    then waits there until its prompt is cancelled, having sent nothing, while the calls already
    in flight finish and are stored; `wait_idle` returns once none is left in flight. Replays and
    cache hits do not pass the gate: they cost nothing.
    """

    def __init__(self) -> None:
        self.in_flight = 0
        self._closed = False
        self._idle = asyncio.Event()
        self._never = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self._closed

    def try_enter(self) -> bool:
        """Take the right to spend if the gate is open (no wait); False once closed."""
        if self._closed:
            return False
        self.in_flight += 1
        return True

    async def enter(self) -> None:
        """Wait for the right to spend: at once while open; never once closed."""
        if self._closed:
            await self._never.wait()  # ended by the prompt's cancellation
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
        if self._closed and self.in_flight == 0:
            self._idle.set()

    def close(self) -> None:
        self._closed = True
        if self.in_flight == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once the gate is closed and no call is in flight."""
        await self._idle.wait()


class PromptContext:
    """`SearchContext` for one prompt of a run (see the module docstring).

    Args:
        prompt: the prompt being searched.
        pool: the open agent pool.
        reward: the run's reward model (shared by every prompt).
        store: the run store (None: nothing is stored; for tests and dry runs).
        run_seed: the run's seed.
        prices: per-agent prices (agents without one cost nothing).
        stored_calls / stored_rewards: what an earlier run stored for this prompt (resume).
        stored_spares: successful calls an earlier resume displaced from their node
            (`RunStore.spare_calls_for`): replayable by request hash.
        cache: the generation cache shared across runs (None: no cache).
        gate: the run's `SpendGate` (None: every call goes through).
    """

    def __init__(
        self,
        prompt: Prompt,
        *,
        pool: AgentPool,
        reward: RewardModel,
        store: RecordSink | None,
        run_seed: int,
        prices: dict[str, Price] | None = None,
        stored_calls: dict[int, CallRecord] | None = None,
        stored_rewards: dict[int, RewardRecord] | None = None,
        stored_spares: Sequence[CallRecord] = (),
        cache: GenerationCache | None = None,
        gate: SpendGate | None = None,
    ) -> None:
        self.prompt = prompt
        self._gate = gate
        self.compute = Compute()
        self._pool = pool
        self._reward = reward
        self._store = store
        self._run_seed = run_seed
        self._prices = prices or {}
        self._stored_calls = stored_calls or {}
        self._stored_rewards = stored_rewards or {}
        # Successful stored calls by request hash, and stored scores by response hash: what a
        # rebuilt tree that took another path can still replay.
        self._calls_by_hash = {
            rec.request_hash: rec
            for rec in (*stored_spares, *self._stored_calls.values())
            if rec.ok
        }
        self._displaced: set[int] = set()  # nodes whose old successful call was kept aside
        self._rewards_by_text = {
            rec.response_hash: rec for rec in self._stored_rewards.values() if rec.ok
        }
        self._cache = cache
        self._occurrences: Counter[str] = Counter()  # generate calls so far, by request key
        # messages' JSON by the messages tuple (kept, so that its id is not reused)
        self._encoded: dict[int, tuple[Sequence[Message], str]] = {}
        self._agents = pool.names
        self._clients = {name: pool[name] for name in self._agents}  # asked on every play
        self._pending: list[asyncio.Future[None]] = []

    @property
    def agents(self) -> tuple[str, ...]:
        return self._agents

    def is_available(self, agent: str) -> bool:
        return (self._clients.get(agent) or self._pool[agent]).is_available()

    async def generate(
        self, agent: str, messages: Sequence[Message], *, node_id: int
    ) -> Completion:
        client = self._clients.get(agent) or self._pool[agent]  # the pool names an unknown one
        seed, key = self._identify(client.spec, messages)
        stored = self._stored_calls.get(node_id)
        if stored is not None and stored.agent == agent and stored.request_hash == key:
            return self._replay(stored, client.spec)
        self._keep_displaced(stored)  # another request takes this node
        moved = self._calls_by_hash.get(key)
        if moved is not None and moved.agent == agent:  # the same request, elsewhere in the tree
            self._store_call(replace(moved, node_id=node_id))
            return self._replay(moved, client.spec)
        cached = self._cache.get(key) if self._cache is not None else None
        if cached is not None:
            return self._from_cache(cached, node_id, client.spec)
        self._check_store()  # a call whose record cannot be stored would be paid for twice
        if self._gate is not None:
            if not self._gate.try_enter():
                await self._gate.enter()
            try:
                self._check_store()  # it may have failed while this call waited
            except StoreError:
                self._gate.leave()
                raise
        started = time.time()
        try:
            completion = await client.generate(messages, seed=seed)
        except AgentError as error:
            self._count_failure(agent)
            self._store_call(failed_record(self.prompt.id, node_id, agent, key, error, started))
            raise
        finally:
            if self._gate is not None:
                self._gate.leave()
        self._count(client.spec, completion.usage)
        self._store_call(ok_record(self.prompt.id, node_id, key, completion, started))
        if self._cache is not None:
            self._cache.put(key, completion)
        return completion

    def _identify(self, spec: AgentSpec, messages: Sequence[Message]) -> tuple[int, str]:
        """(seed, request hash) of this request; counts the request's occurrence.

        The seed comes from the request's key (`request_key`) and occurrence, the hash from
        the request with that seed (`request_hash`): one `RequestIdentity` makes both. The
        messages' JSON is made once per messages tuple (a strategy sends the same fresh request
        to every agent; a tuple of frozen messages cannot change in between).

        Synchronous on purpose: concurrent calls started in one order (`asyncio.gather`) take
        their occurrence indexes in that order, on the first run and on a resume alike.
        """
        if type(messages) is not tuple:  # a list may be changed between calls: encode it now
            encoded = messages_json(messages)
        elif (found := self._encoded.get(id(messages))) is not None and found[0] is messages:
            encoded = found[1]
        else:
            encoded = messages_json(messages)
            self._encoded[id(messages)] = (messages, encoded)  # holds it: the id stays its own
        identity = RequestIdentity(spec, encoded)
        key = identity.key
        occurrence = self._occurrences[key]
        self._occurrences[key] = occurrence + 1
        seed = call_seed(self._run_seed, self.prompt.id, key, occurrence)
        return seed, identity.hash_with(seed)

    def _from_cache(self, hit: CachedGeneration, node_id: int, spec: AgentSpec) -> Completion:
        """A cache hit: counted like a call (no request sent) and stored as the node's call."""
        completion = Completion(
            agent=spec.name,
            text=hit.text,
            usage=Usage(hit.prompt_tokens, hit.completion_tokens),
            finish_reason=hit.finish_reason or "",
            endpoint=hit.endpoint or "",
            model=spec.model,
            latency_s=hit.latency_s,
            attempts=0,
        )
        self.compute.cached_calls += 1
        self._count(spec, completion.usage)
        record = ok_record(self.prompt.id, node_id, hit.request_hash, completion, time.time())
        self._store_call(record)
        return completion

    async def score(
        self, prompt: Prompt, responses: Sequence[str], *, node_ids: Sequence[int]
    ) -> list[Score]:
        results: list[Score | None] = [None] * len(responses)
        todo: list[int] = []
        digests = [text_hash(text) for text in responses]
        for i, (digest, node_id) in enumerate(zip(digests, node_ids, strict=True)):
            stored = self._stored_rewards.get(node_id)
            if stored is not None and stored.response_hash == digest:
                results[i] = replayed_score(stored)
            elif (moved := self._rewards_by_text.get(digest)) is not None:
                replayed = results[i] = replayed_score(moved)  # the same text, another node
                self._store_reward(node_id, digest, replayed)
            else:
                todo.append(i)
        if todo:
            self._check_store()
            if self._gate is not None and not self._gate.try_enter():
                await self._gate.enter()
            try:
                fresh = await self._score_now(prompt, [responses[i] for i in todo])
            finally:
                if self._gate is not None:
                    self._gate.leave()
            for i, score in zip(todo, fresh, strict=True):
                results[i] = score
                self._store_reward(node_ids[i], digests[i], score)
        final = [s for s in results if s is not None]
        self.compute.reward_calls += len(final)
        self.compute.failed_rewards += sum(isinstance(s, ScoreFailure) for s in final)
        return final

    async def _score_now(self, prompt: Prompt, responses: list[str]) -> list[Score]:
        try:
            scores = await self._reward.score(prompt, responses)
        except Exception as exc:  # a reward crash fails these scores, never the run
            message = f"reward {self._reward.name!r} failed: {type(exc).__name__}: {exc}"
            return [ScoreFailure(message, error_type=type(exc).__name__)] * len(responses)
        if len(scores) != len(responses):
            message = (
                f"reward {self._reward.name!r} returned {len(scores)} scores for "
                f"{len(responses)} responses"
            )
            return [ScoreFailure(message, error_type="RewardShapeError")] * len(responses)
        return scores

    def _replay(self, stored: CallRecord, spec: AgentSpec) -> Completion:
        self.compute.replayed_calls += 1
        if not stored.ok:
            self._count_failure(stored.agent)
            if stored.error_type == AgentUnavailableError.__name__:
                raise AgentUnavailableError(
                    f"(replayed) {stored.error}", agent=stored.agent, retry_in_s=0.0
                )
            raise ReplayedFailure(f"(replayed) {stored.error}", agent=stored.agent)
        usage = Usage(stored.prompt_tokens, stored.completion_tokens)
        self._count(spec, usage)
        return Completion(
            agent=stored.agent,
            text=stored.text or "",
            usage=usage,
            finish_reason=stored.finish_reason or "",
            endpoint=stored.endpoint or "",
            model=spec.model,
            latency_s=stored.latency_s,
            attempts=stored.attempts,
        )

    def _agent_compute(self, agent: str) -> AgentCompute:
        found = self.compute.by_agent.get(agent)
        if found is None:
            found = self.compute.by_agent[agent] = AgentCompute()
        return found

    def _count_failure(self, agent: str) -> None:
        self.compute.calls += 1
        self.compute.failed_calls += 1
        per_agent = self._agent_compute(agent)
        per_agent.calls += 1
        per_agent.failed_calls += 1

    def _count(self, spec: AgentSpec, usage: Usage) -> None:
        c = self.compute
        c.calls += 1
        if usage.missing:
            c.missing_usage += 1
        prompt_tokens, completion_tokens = usage.prompt_tokens or 0, usage.completion_tokens or 0
        c.prompt_tokens += prompt_tokens
        c.completion_tokens += completion_tokens
        if spec.params_b is not None:
            c.flops += 2.0 * spec.params_b * 1e9 * (prompt_tokens + completion_tokens)
        price = self._prices.get(spec.name)
        if price is not None:
            c.cost_usd += (
                prompt_tokens * price.prompt_usd_per_mtok
                + completion_tokens * price.completion_usd_per_mtok
            ) / 1e6
        per_agent = self._agent_compute(spec.name)
        per_agent.calls += 1
        per_agent.prompt_tokens += prompt_tokens
        per_agent.completion_tokens += completion_tokens

    async def flush(self) -> None:
        """Wait until every record this prompt queued is committed.

        Raises:
            StoreError: a record could not be written (the prompt must not count as done).
        """
        pending, self._pending = self._pending, []
        # Most were committed while the search went on: read those at once, in order, and
        # wait only for the rest (a gather over every record costs a callback per record).
        waiting = []
        for future in pending:
            if future.done():
                future.result()  # raises its StoreError
            else:
                waiting.append(future)
        if waiting:
            await asyncio.gather(*waiting)

    def _check_store(self) -> None:
        """Refuse new spending once the store has failed a write (disk full, I/O error, ...)."""
        failure = self._store.failure if self._store is not None else None
        if failure is not None:
            raise StoreError(f"{failure} (stopped before sending more requests)")

    def _keep_displaced(self, stored: CallRecord | None) -> None:
        """Before another request takes a node whose stored call succeeded, keep that call
        (as a spare, by request hash): the rebuilt tree may still ask for it elsewhere."""
        if stored is None or not stored.ok or self._store is None:
            return
        if stored.node_id in self._displaced:
            return
        self._displaced.add(stored.node_id)
        self._pending.append(self._store.submit_spare_call(stored))

    def _store_call(self, record: CallRecord) -> None:
        if self._store is not None:
            self._pending.append(self._store.submit_call(record))

    def _store_reward(self, node_id: int, response_hash: str, score: Score) -> None:
        if self._store is None:
            return
        failed = isinstance(score, ScoreFailure)
        self._pending.append(
            self._store.submit_reward(
                RewardRecord(
                    prompt_id=self.prompt.id,
                    node_id=node_id,
                    response_hash=response_hash,
                    ok=not failed,
                    score=None if isinstance(score, ScoreFailure) else float(score),
                    error=score.message if isinstance(score, ScoreFailure) else None,
                    created_s=time.time(),
                )
            )
        )
