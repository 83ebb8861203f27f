"""PromptContext: per-request seeds, commit before return, replay, accounting, reward failures.

Every test talks to a real `FakeServer` on 127.0.0.1 through a real `AgentPool`, so "no request
reached the server" is read from the server's own counters.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest

from toa.agents import AgentPool
from toa.agents.spec import AgentSpec, BreakerPolicy, RetryPolicy
from toa.engine.context import (
    Compute,
    Price,
    PromptContext,
    ReplayedFailure,
    SpendGate,
    call_seed,
    request_hash,
    request_key,
)
from toa.errors import AgentUnavailableError, ServerError
from toa.rewards import SimulatedReward
from toa.store.run_store import CallRecord, RunStore, StoreReader
from toa.testing import FakeServer, Faults
from toa.types import Message, Prompt, Score, ScoreFailure

PROMPT = Prompt.from_text("p1", "Explain why the sky looks blue.")
MESSAGES = (Message("user", PROMPT.text),)
OTHER = (Message("user", "Write a haiku about a harbour."),)
RUN_SEED = 7


def spec(server: FakeServer, name: str = "agent_a", **changes: object) -> AgentSpec:
    base = AgentSpec(
        name=name,
        base_urls=(server.base_url,),
        model=name,
        params_b=2.0,
        timeout_s=5.0,
        retry=RetryPolicy(max_attempts=1, base_delay_s=0.0),
        breaker=BreakerPolicy(failure_threshold=100, cooldown_s=60.0, max_cooldown_s=60.0),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    async with FakeServer() as s:
        yield s


@pytest.fixture
async def pool(server: FakeServer) -> AsyncIterator[AgentPool]:
    async with AgentPool([spec(server), spec(server, "agent_c", params_b=None)], seed=0) as p:
        yield p


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    s = RunStore(tmp_path / "store.sqlite")
    yield s
    s.close()


def make_ctx(
    pool: AgentPool,
    store: RunStore | None,
    *,
    reward: object | None = None,
    prices: dict[str, Price] | None = None,
    replay_from: RunStore | None = None,
) -> PromptContext:
    return PromptContext(
        PROMPT,
        pool=pool,
        reward=reward or SimulatedReward(),  # type: ignore[arg-type]
        store=store,
        run_seed=RUN_SEED,
        prices=prices,
        stored_calls=replay_from.calls_for(PROMPT.id) if replay_from else None,
        stored_rewards=replay_from.rewards_for(PROMPT.id) if replay_from else None,
    )


class CountingReward:
    """SimulatedReward that counts what it is asked to score."""

    name = "counting"

    def __init__(self) -> None:
        self.scored: list[str] = []

    async def score(self, prompt: Prompt, responses: Sequence[str]) -> list[Score]:
        self.scored.extend(responses)
        return await SimulatedReward().score(prompt, responses)

    async def aclose(self) -> None:
        return None


class RaisingReward:
    name = "raising"

    async def score(self, prompt: Prompt, responses: Sequence[str]) -> list[Score]:
        raise RuntimeError("reward model out of memory")

    async def aclose(self) -> None:
        return None


class ShortReward:
    name = "short"

    async def score(self, prompt: Prompt, responses: Sequence[str]) -> list[Score]:
        return [0.5]

    async def aclose(self) -> None:
        return None


# ------------------------------------------------------------------------------- generation


async def test_generate_sends_per_request_seed_and_stores_the_call(
    server: FakeServer, pool: AgentPool, store: RunStore, tmp_path: Path
) -> None:
    ctx = make_ctx(pool, store)
    first = await ctx.generate("agent_a", MESSAGES, node_id=3)
    # queued when the call returned; committed once `flush` returns: an independent reader sees it
    await ctx.flush()
    with StoreReader(tmp_path / "store.sqlite") as reader:
        stored = reader.calls_for(PROMPT.id)
    assert set(stored) == {3}
    record = stored[3]
    assert record.ok
    assert record.text == first.text
    assert record.agent == "agent_a"
    assert record.prompt_tokens == first.usage.prompt_tokens
    assert record.completion_tokens == first.usage.completion_tokens

    await ctx.generate("agent_a", MESSAGES, node_id=4)  # the same request again: sample 1
    await ctx.generate("agent_a", OTHER, node_id=5)  # another request: its sample 0
    await ctx.generate("agent_c", MESSAGES, node_id=6)  # another agent: another request
    await ctx.generate("agent_a", MESSAGES, node_id=7)  # sample 2 of the first request
    a, c = pool["agent_a"].spec, pool["agent_c"].spec
    expected = [
        call_seed(RUN_SEED, PROMPT.id, request_key(a, MESSAGES), 0),
        call_seed(RUN_SEED, PROMPT.id, request_key(a, MESSAGES), 1),
        call_seed(RUN_SEED, PROMPT.id, request_key(a, OTHER), 0),
        call_seed(RUN_SEED, PROMPT.id, request_key(c, MESSAGES), 0),
        call_seed(RUN_SEED, PROMPT.id, request_key(a, MESSAGES), 2),
    ]
    seeds = [r.body["seed"] for r in server.requests]
    assert seeds == expected
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= seed < 2**31 for seed in seeds)
    # every input of the seed matters
    key = request_key(a, MESSAGES)
    assert call_seed(RUN_SEED, PROMPT.id, key, 0) != call_seed(RUN_SEED, "p2", key, 0)
    assert call_seed(RUN_SEED, PROMPT.id, key, 0) != call_seed(RUN_SEED + 1, PROMPT.id, key, 0)
    assert call_seed(RUN_SEED, PROMPT.id, key, 0) == call_seed(RUN_SEED, PROMPT.id, key, 0)
    # the key is the request without its seed: a seed in the agent's settings changes nothing
    seeded = dataclasses.replace(a, sampling=dataclasses.replace(a.sampling, seed=99))
    assert request_key(seeded, MESSAGES) == key
    assert request_key(a, OTHER) != key
    assert request_key(dataclasses.replace(a, name="agent_z"), MESSAGES) != key
    # the stored hash is the one of exactly this request (agent, messages, sampling with seed)
    sampling = dataclasses.replace(a.sampling, seed=expected[0])
    assert record.request_hash == request_hash(a, MESSAGES, sampling.to_request_fields())


async def test_a_messages_list_changed_between_calls_is_hashed_as_sent(
    server: FakeServer, pool: AgentPool, store: RunStore, tmp_path: Path
) -> None:
    """The context keeps the JSON of a messages tuple for its next call; a list may change in
    between (a strategy reusing one), so it is encoded as it is at each call."""
    ctx = make_ctx(pool, store)
    messages = [Message("user", "first question")]
    await ctx.generate("agent_a", messages, node_id=1)
    messages[0] = Message("user", "second question")
    await ctx.generate("agent_a", messages, node_id=2)
    same = (Message("user", "third question"),)
    await ctx.generate("agent_a", same, node_id=3)
    await ctx.generate("agent_c", same, node_id=4)
    await ctx.flush()
    with StoreReader(tmp_path / "store.sqlite") as reader:
        stored = reader.calls_for(PROMPT.id)
    sent = {i + 1: r.body for i, r in enumerate(server.requests)}
    for node_id, body in sent.items():
        spec = pool[stored[node_id].agent].spec
        asked = [Message(m["role"], m["content"]) for m in body["messages"]]
        fields = dataclasses.replace(spec.sampling, seed=body["seed"]).to_request_fields()
        assert stored[node_id].request_hash == request_hash(spec, asked, fields)
    assert sent[2]["messages"][0]["content"] == "second question"


async def test_the_seed_follows_the_request_not_the_tree_position(
    server: FakeServer, pool: AgentPool
) -> None:
    """The same requests in the same order at other nodes (another tree, another strategy)
    are the same samples; a different order of distinct requests changes nothing either."""
    first, second = make_ctx(pool, None), make_ctx(pool, None)
    texts = [
        (await first.generate(agent, messages, node_id=node_id)).text
        for node_id, agent, messages in [
            (1, "agent_a", MESSAGES),
            (2, "agent_a", OTHER),
            (3, "agent_a", MESSAGES),
        ]
    ]
    texts += [
        (await second.generate(agent, messages, node_id=node_id)).text
        for node_id, agent, messages in [
            (40, "agent_a", OTHER),
            (12, "agent_c", MESSAGES),
            (50, "agent_a", MESSAGES),
            (7, "agent_a", MESSAGES),
        ]
    ]
    sent = [(r.body["seed"], r.body["messages"][-1]["content"]) for r in server.requests]
    assert sent[3] == sent[1]  # OTHER, sample 0, at nodes 2 and 40
    assert sent[5] == sent[0]  # MESSAGES, sample 0, at nodes 1 and 50
    assert sent[6] == sent[2]  # MESSAGES, sample 1, at nodes 3 and 7
    assert (texts[3], texts[5], texts[6]) == (texts[1], texts[0], texts[2])
    assert sent[0][0] != sent[2][0]  # the second sample of a request is another sample


async def test_concurrent_identical_requests_take_sample_indexes_in_call_order(
    pool: AgentPool, store: RunStore
) -> None:
    ctx = make_ctx(pool, store)
    await asyncio.gather(*(ctx.generate("agent_a", MESSAGES, node_id=n) for n in (5, 2, 9)))
    await ctx.flush()
    stored = store.calls_for(PROMPT.id)
    spec = pool["agent_a"].spec
    for occurrence, node_id in enumerate((5, 2, 9)):
        seed = call_seed(RUN_SEED, PROMPT.id, request_key(spec, MESSAGES), occurrence)
        fields = dataclasses.replace(spec.sampling, seed=seed).to_request_fields()
        assert stored[node_id].request_hash == request_hash(spec, MESSAGES, fields)


async def test_replay_returns_stored_completion_without_a_request(
    server: FakeServer, pool: AgentPool, store: RunStore
) -> None:
    original = make_ctx(pool, store)
    done = await original.generate("agent_a", MESSAGES, node_id=1)
    await original.flush()
    before = server.stats()["total"]

    resumed = make_ctx(pool, None, replay_from=store)
    again = await resumed.generate("agent_a", MESSAGES, node_id=1)

    assert server.stats()["total"] == before  # nothing reached the server
    assert (again.text, again.usage, again.agent) == (done.text, done.usage, done.agent)
    c = resumed.compute
    assert (c.calls, c.replayed_calls, c.failed_calls) == (1, 1, 0)
    assert c.prompt_tokens == done.usage.prompt_tokens
    assert c.completion_tokens == done.usage.completion_tokens


async def test_replay_only_for_the_same_request(
    server: FakeServer, pool: AgentPool, store: RunStore
) -> None:
    original = make_ctx(pool, store)
    await original.generate("agent_a", MESSAGES, node_id=1)
    await original.flush()
    before = server.stats()["total"]
    resumed = make_ctx(pool, None, replay_from=store)
    # other messages at the same node, or another agent: a different request, sent again
    await resumed.generate("agent_a", OTHER, node_id=1)
    await resumed.generate("agent_c", MESSAGES, node_id=1)
    assert server.stats()["total"] == before + 2
    assert resumed.compute.replayed_calls == 0


async def test_the_same_request_at_another_node_replays(
    server: FakeServer, pool: AgentPool, store: RunStore
) -> None:
    """A rebuilt tree that took another path (an agent was out in the first run, say) still
    replays what it asks for again, from wherever it was stored, and stores it at its new node."""
    original = make_ctx(pool, store)
    first = await original.generate("agent_a", MESSAGES, node_id=1)
    await original.flush()
    before = server.stats()["total"]
    resumed = make_ctx(pool, store, replay_from=store)
    again = await resumed.generate("agent_a", MESSAGES, node_id=4)
    assert again.text == first.text
    assert server.stats()["total"] == before
    assert resumed.compute.replayed_calls == 1
    second = await resumed.generate("agent_a", MESSAGES, node_id=5)  # the next sample: sent
    assert second.text != first.text
    assert server.stats()["total"] == before + 1
    await resumed.flush()
    stored = store.calls_for(PROMPT.id)
    assert stored[4].text == first.text
    assert stored[4].request_hash == stored[1].request_hash


async def test_a_displaced_successful_call_stays_replayable(
    server: FakeServer, pool: AgentPool, store: RunStore
) -> None:
    """A resumed tree that gives a node to another request keeps the node's old call aside, so
    the old request still replays (here from a third run) wherever the tree asks for it."""
    original = make_ctx(pool, store)
    first = await original.generate("agent_a", MESSAGES, node_id=1)
    await original.flush()
    resumed = make_ctx(pool, store, replay_from=store)
    await resumed.generate("agent_c", MESSAGES, node_id=1)  # another request takes node 1
    await resumed.flush()
    assert store.calls_for(PROMPT.id)[1].agent == "agent_c"
    [spare] = store.spare_calls_for(PROMPT.id)
    assert spare.text == first.text
    before = server.stats()["total"]
    third = PromptContext(
        PROMPT, pool=pool, reward=SimulatedReward(), store=store, run_seed=RUN_SEED,
        stored_calls=store.calls_for(PROMPT.id), stored_rewards=store.rewards_for(PROMPT.id),
        stored_spares=store.spare_calls_for(PROMPT.id),
    )  # fmt: skip
    again = await third.generate("agent_a", MESSAGES, node_id=9)
    assert again.text == first.text
    assert server.stats()["total"] == before


async def test_stored_failure_replays_as_failure(
    server: FakeServer, pool: AgentPool, store: RunStore
) -> None:
    server.set_faults(Faults(script=("500",)))
    ctx = make_ctx(pool, store)
    with pytest.raises(ServerError) as raised:
        await ctx.generate("agent_a", MESSAGES, node_id=5)
    await ctx.flush()
    record = store.calls_for(PROMPT.id)[5]
    assert not record.ok
    assert record.text is None
    assert record.error == str(raised.value)
    assert record.error
    assert record.error_type == "ServerError"
    assert (ctx.compute.calls, ctx.compute.failed_calls) == (1, 1)

    before = server.stats()["total"]
    resumed = make_ctx(pool, None, replay_from=store)
    with pytest.raises(ReplayedFailure) as replayed:
        await resumed.generate("agent_a", MESSAGES, node_id=5)
    assert server.stats()["total"] == before
    assert "(replayed)" in str(replayed.value)
    assert record.error in str(replayed.value)
    c = resumed.compute
    assert (c.calls, c.failed_calls, c.replayed_calls) == (1, 1, 1)
    assert (c.prompt_tokens, c.completion_tokens) == (0, 0)


async def test_stored_unavailable_replays_as_unavailable(
    server: FakeServer, pool: AgentPool
) -> None:
    client = pool["agent_a"]
    seed = call_seed(RUN_SEED, PROMPT.id, request_key(client.spec, MESSAGES), 0)
    sampling = dataclasses.replace(client.spec.sampling, seed=seed)
    record = CallRecord(
        prompt_id=PROMPT.id,
        node_id=2,
        agent="agent_a",
        request_hash=request_hash(client.spec, MESSAGES, sampling.to_request_fields()),
        ok=False,
        text=None,
        error="agent 'agent_a': all 1 replica(s) are out",
        error_type="AgentUnavailableError",
        prompt_tokens=None,
        completion_tokens=None,
        finish_reason=None,
        latency_s=0.0,
        attempts=0,
        endpoint=None,
        created_s=0.0,
    )
    ctx = PromptContext(
        PROMPT,
        pool=pool,
        reward=SimulatedReward(),
        store=None,
        run_seed=RUN_SEED,
        stored_calls={2: record},
    )
    with pytest.raises(AgentUnavailableError, match="replayed"):
        await ctx.generate("agent_a", MESSAGES, node_id=2)
    assert server.stats()["total"] == 0
    assert ctx.compute.failed_calls == 1


async def test_accounting_calls_tokens_flops_cost(
    server: FakeServer, pool: AgentPool, store: RunStore
) -> None:
    prices = {"agent_a": Price(prompt_usd_per_mtok=3.0, completion_usd_per_mtok=15.0)}
    ctx = make_ctx(pool, store, prices=prices)
    a1 = await ctx.generate("agent_a", MESSAGES, node_id=1)
    a2 = await ctx.generate("agent_a", OTHER, node_id=2)
    c1 = await ctx.generate("agent_c", MESSAGES, node_id=3)  # no params_b, no price
    server.set_faults(Faults(script=("500",)))
    with pytest.raises(ServerError):
        await ctx.generate("agent_c", OTHER, node_id=4)
    await ctx.flush()

    usages = [x.usage for x in (a1, a2, c1)]
    assert all(u.prompt_tokens and u.completion_tokens for u in usages)
    c = ctx.compute
    assert (c.calls, c.failed_calls, c.replayed_calls, c.missing_usage) == (4, 1, 0, 0)
    assert c.prompt_tokens == sum(u.prompt_tokens or 0 for u in usages)
    assert c.completion_tokens == sum(u.completion_tokens or 0 for u in usages)
    a_tokens = a1.usage.total_tokens + a2.usage.total_tokens
    assert c.flops == pytest.approx(2 * 2.0e9 * a_tokens)  # only agent_a has params_b
    a_prompt = (a1.usage.prompt_tokens or 0) + (a2.usage.prompt_tokens or 0)
    a_completion = (a1.usage.completion_tokens or 0) + (a2.usage.completion_tokens or 0)
    assert c.cost_usd == pytest.approx((a_prompt * 3.0 + a_completion * 15.0) / 1e6)
    assert c.by_agent["agent_a"].to_dict() == {
        "calls": 2,
        "failed_calls": 0,
        "prompt_tokens": a_prompt,
        "completion_tokens": a_completion,
    }
    assert c.by_agent["agent_c"].calls == 2
    assert c.by_agent["agent_c"].failed_calls == 1
    as_dict = c.to_dict()
    assert as_dict["calls"] == 4
    assert as_dict["failed_calls"] == 1
    assert as_dict["flops"] == c.flops

    # replayed calls count the same again (they were paid for once, earlier)
    resumed = make_ctx(pool, None, prices=prices, replay_from=store)
    before = server.stats()["total"]
    await resumed.generate("agent_a", MESSAGES, node_id=1)
    await resumed.generate("agent_a", OTHER, node_id=2)
    assert server.stats()["total"] == before
    assert resumed.compute.flops == pytest.approx(2 * 2.0e9 * a_tokens)
    assert resumed.compute.cost_usd == pytest.approx(c.cost_usd)


async def test_missing_usage_is_counted_not_invented(tmp_path: Path) -> None:
    async with (
        FakeServer(omit_usage=True) as server,
        AgentPool([spec(server)], seed=0) as pool,
    ):
        ctx = make_ctx(pool, None)
        completion = await ctx.generate("agent_a", MESSAGES, node_id=1)
    assert completion.usage.missing
    c = ctx.compute
    assert (c.calls, c.missing_usage, c.prompt_tokens, c.completion_tokens, c.flops) == (
        1,
        1,
        0,
        0,
        0.0,
    )


# ------------------------------------------------------------------------------------ rewards


async def test_score_counts_and_stores_each_reward(
    pool: AgentPool, store: RunStore, server: FakeServer
) -> None:
    reward = CountingReward()
    ctx = make_ctx(pool, store, reward=reward)
    texts = [(await ctx.generate("agent_a", MESSAGES, node_id=i)).text for i in (1, 2)]
    texts.append("a response with no quality marker")
    scores = await ctx.score(PROMPT, texts, node_ids=[1, 2, 3])
    assert all(isinstance(s, float) for s in scores[:2])
    assert isinstance(scores[2], ScoreFailure)
    assert scores[2].message
    assert (ctx.compute.reward_calls, ctx.compute.failed_rewards) == (3, 1)
    await ctx.flush()
    rewards = store.rewards_for(PROMPT.id)
    assert [rewards[i].score for i in (1, 2)] == scores[:2]
    assert not rewards[3].ok
    assert rewards[3].score is None
    assert rewards[3].error

    # resume: stored rewards (the failure too) are replayed, not asked for again
    resumed_reward = CountingReward()
    resumed = make_ctx(pool, None, reward=resumed_reward, replay_from=store)
    again = await resumed.score(PROMPT, texts, node_ids=[1, 2, 3])
    assert resumed_reward.scored == []
    assert again[:2] == scores[:2]
    assert isinstance(again[2], ScoreFailure)
    assert (resumed.compute.reward_calls, resumed.compute.failed_rewards) == (3, 1)
    # a text scored at another node (the rebuilt tree took another path) is replayed...
    [moved] = await resumed.score(PROMPT, [texts[1]], node_ids=[7])
    assert moved == scores[1]
    assert resumed_reward.scored == []
    # ...and a text never scored is scored afresh
    fresh = f"{texts[0]} (edited)"
    await resumed.score(PROMPT, [fresh], node_ids=[1])
    assert resumed_reward.scored == [fresh]
    await resumed.flush()


@pytest.mark.parametrize("reward", [RaisingReward(), ShortReward()], ids=["raises", "short"])
async def test_failing_reward_gives_score_failure_per_response_never_zero(
    pool: AgentPool, store: RunStore, reward: object
) -> None:
    ctx = make_ctx(pool, store, reward=reward)
    texts = [(await ctx.generate("agent_a", MESSAGES, node_id=i)).text for i in (1, 2, 3)]
    scores = await ctx.score(PROMPT, texts, node_ids=[1, 2, 3])
    assert len(scores) == 3
    for s in scores:
        assert isinstance(s, ScoreFailure)
        assert s.message
        assert s.error_type
    if isinstance(reward, RaisingReward):
        assert "out of memory" in scores[0].message  # type: ignore[union-attr]
        assert scores[0].error_type == "RuntimeError"  # type: ignore[union-attr]
    assert (ctx.compute.reward_calls, ctx.compute.failed_rewards) == (3, 3)
    await ctx.flush()
    stored = store.rewards_for(PROMPT.id)
    assert len(stored) == 3
    for record in stored.values():
        assert not record.ok
        assert record.score is None
        assert record.error


def test_compute_to_dict_is_json_ready() -> None:
    c = Compute(calls=2, failed_calls=1, prompt_tokens=3, cost_usd=0.1234567)
    d = c.to_dict()
    assert d["cost_usd"] == 0.123457
    assert set(d) >= {"calls", "prompt_tokens", "completion_tokens", "flops", "reward_calls"}


async def test_the_spend_gate_lets_calls_through_while_open_and_none_once_closed() -> None:
    gate = SpendGate()
    assert gate.try_enter()
    await gate.enter()
    assert gate.in_flight == 2
    gate.close()
    assert not gate.try_enter()  # nothing new once closed
    waiting = asyncio.create_task(gate.enter())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # waits until its prompt is cancelled
    idle = asyncio.create_task(gate.wait_idle())
    gate.leave()
    await asyncio.sleep(0)
    assert not idle.done()
    gate.leave()
    await asyncio.wait_for(idle, 1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert gate.in_flight == 0
