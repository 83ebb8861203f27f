"""The generation cache: shared across runs and strategies, successes only, never paid twice.

Every run talks to a real `FakeServer` on 127.0.0.1, so "no request was sent" is read from the
server's own request log.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from toa.agents import AgentPool
from toa.agents.spec import AgentSpec, RetryPolicy
from toa.config import parse_config, with_overrides
from toa.engine.context import Compute, PromptContext, request_hash
from toa.engine.runner import run
from toa.errors import InputError, ServerError, StoreError
from toa.rewards import SimulatedReward
from toa.store.cache import CachedGeneration, GenerationCache
from toa.store.run_store import RunStore
from toa.testing import FakeServer, Faults
from toa.types import Completion, Message, Prompt, Usage

AGENTS = ("agent_a", "agent_b", "agent_c")
PROMPT = Prompt.from_text("p1", "Explain why the sky looks blue.")
MESSAGES = (Message("user", PROMPT.text),)


def settings(base_url: str, cache: Path | None, strategy: str, budget: int, **extra: Any) -> Any:
    runner: dict[str, Any] = {"prompts_in_flight": 4}
    if cache is not None:
        runner["cache"] = str(cache)
    return parse_config(
        {
            "agents": [
                {"name": n, "base_url": base_url, "model": n, "params_b": 1.0} for n in AGENTS
            ],
            "reward": {"type": "simulated"},
            "strategy": {"name": strategy, "budget": budget, **extra},
            "runner": runner,
            "seed": 3,
        }
    )


def write_prompts(path: Path, n: int) -> Path:
    rows = (json.dumps({"id": f"p{i:02d}", "prompt": f"Question {i}: why?"}) for i in range(n))
    path.write_text("".join(row + "\n" for row in rows), encoding="utf-8")
    return path


def results(run_dir: Path) -> dict[str, dict[str, Any]]:
    lines = (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return {r["id"]: r for r in map(json.loads, lines)}


def identity(body: dict[str, Any]) -> tuple[str, int, str]:
    return body["model"], body["seed"], json.dumps(body["messages"], sort_keys=True)


def completion(text: str = "an answer") -> Completion:
    return Completion(
        agent="agent_a",
        text=text,
        usage=Usage(11, 7),
        finish_reason="stop",
        endpoint="http://127.0.0.1:1/v1",
        model="agent_a",
        latency_s=0.25,
    )


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[GenerationCache]:
    c = GenerationCache(tmp_path / "cache" / "generations.sqlite")
    yield c
    c.close()


# ------------------------------------------------------------------------------ the file


def test_put_then_get_round_trip_and_survives_reopening(
    cache: GenerationCache, tmp_path: Path
) -> None:
    assert cache.get("k1") is None
    cache.put("k1", completion())
    cache.flush()
    hit = cache.get("k1")
    assert isinstance(hit, CachedGeneration)
    assert (hit.request_hash, hit.agent, hit.model, hit.text) == (
        "k1",
        "agent_a",
        "agent_a",
        "an answer",
    )
    assert (hit.prompt_tokens, hit.completion_tokens, hit.finish_reason) == (11, 7, "stop")
    assert hit.latency_s == 0.25
    assert hit.created_s > 0
    cache.put("k1", completion("another"))  # the first generation of a key stays
    cache.close()
    cache.close()  # idempotent
    cache.put("k2", completion())  # after close: ignored, never raises
    assert cache.get("k1") is None  # closed: a miss
    with GenerationCache(tmp_path / "cache" / "generations.sqlite") as again:
        found = again.get("k1")
        assert found is not None
        assert found.text == "an answer"
        assert len(again) == 1


def test_a_broken_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "cache.sqlite"
    bad.write_text("not a database " * 100)
    with pytest.raises(StoreError, match="generation cache"):
        GenerationCache(bad)


# ------------------------------------------------------------------------------ the context


def spec(server: FakeServer, name: str = "agent_a") -> AgentSpec:
    return AgentSpec(
        name=name,
        base_urls=(server.base_url,),
        model=name,
        params_b=2.0,
        timeout_s=5.0,
        retry=RetryPolicy(max_attempts=1, base_delay_s=0.0),
    )


def context(pool: AgentPool, cache: GenerationCache, store: RunStore | None) -> PromptContext:
    return PromptContext(
        PROMPT, pool=pool, reward=SimulatedReward(), store=store, run_seed=1, cache=cache
    )


async def test_a_hit_sends_nothing_counts_as_compute_and_is_stored_as_the_call(
    cache: GenerationCache, tmp_path: Path
) -> None:
    async with FakeServer() as server, AgentPool([spec(server)], seed=0) as pool:
        first = context(pool, cache, None)
        made = [await first.generate("agent_a", MESSAGES, node_id=n) for n in (1, 2)]
        cache.flush()
        assert server.stats()["total"] == 2
        assert first.compute.cached_calls == 0

        with RunStore(tmp_path / "store.sqlite") as store:
            second = context(pool, cache, store)
            # other nodes, same requests (samples 0 and 1): answered from the cache
            again = [await second.generate("agent_a", MESSAGES, node_id=n) for n in (7, 3)]
            await second.flush()
            stored = store.calls_for(PROMPT.id)
        assert server.stats()["total"] == 2  # nothing sent
    assert [c.text for c in again] == [c.text for c in made]
    assert [c.usage for c in again] == [c.usage for c in made]
    c = second.compute
    assert (c.calls, c.cached_calls, c.replayed_calls) == (2, 2, 0)
    tokens = sum(x.usage.total_tokens for x in made)
    assert c.prompt_tokens + c.completion_tokens == tokens
    assert c.flops == pytest.approx(2 * 2.0e9 * tokens)
    assert c.to_dict()["cached_calls"] == 2
    assert set(stored) == {7, 3}
    assert [stored[n].text for n in (7, 3)] == [x.text for x in made]
    assert all(stored[n].ok for n in (7, 3))


async def test_failures_are_not_cached(cache: GenerationCache) -> None:
    async with FakeServer() as server, AgentPool([spec(server)], seed=0) as pool:
        server.set_faults(Faults(script=("500",)))
        first = context(pool, cache, None)
        with pytest.raises(ServerError):
            await first.generate("agent_a", MESSAGES, node_id=1)
        cache.flush()
        assert len(cache) == 0
        second = context(pool, cache, None)
        done = await second.generate("agent_a", MESSAGES, node_id=1)  # sent again, succeeds
        cache.flush()
        assert server.stats()["total"] == 2
        assert second.compute.cached_calls == 0
        assert len(cache) == 1
        third = context(pool, cache, None)
        assert (await third.generate("agent_a", MESSAGES, node_id=1)).text == done.text
        assert server.stats()["total"] == 2


# ------------------------------------------------------------------------------ the runner


@pytest.mark.parametrize(
    ("first", "second", "shared_per_prompt"),
    [
        # ensemble b4 (a:2, b:1, c:1) is the start of ensemble b8 (a:3, b:3, c:2)
        (("ensemble", 4, {}), ("ensemble", 8, {}), 4),
        # random with agent_b draws agent_b's samples 0 and 1: ensemble b8 made them
        (("ensemble", 8, {}), ("random", 2, {"agent": "agent_b"}), 2),
        # TOA (rule ucb) first plays fresh answers of each agent: ensemble's samples 0
        (("ensemble", 4, {}), ("toa", 4, {"rule": "ucb"}), 3),
    ],
    ids=["ensemble4-then-8", "ensemble-then-random", "ensemble-then-toa"],
)
async def test_two_strategies_sharing_a_cache_never_send_a_shared_request_twice(
    tmp_path: Path,
    first: tuple[str, int, dict[str, Any]],
    second: tuple[str, int, dict[str, Any]],
    shared_per_prompt: int,
) -> None:
    n = 5
    inputs = write_prompts(tmp_path / "p.jsonl", n)
    cache = tmp_path / "generations.sqlite"
    async with FakeServer() as server:
        name, budget, extra = first
        one = await run(
            settings(server.base_url, cache, name, budget, **extra),
            input_path=inputs,
            run_dir=tmp_path / "one",
        )
        sent_first = {identity(r.body) for r in server.requests}
        assert len(sent_first) == server.stats()["total"] == n * budget
        name, budget, extra = second
        two = await run(
            settings(server.base_url, cache, name, budget, **extra),
            input_path=inputs,
            run_dir=tmp_path / "two",
        )
        sent_second = [identity(r.body) for r in server.requests[n * first[1] :]]
    assert one.exit_code == two.exit_code == 0
    assert not set(sent_second) & sent_first  # nothing the first run made was sent again
    assert len(sent_second) == n * (budget - shared_per_prompt)
    assert two.compute.cached_calls == n * shared_per_prompt
    assert two.compute.calls == n * budget  # cached calls count as the strategy's compute

    # a shared sample is the same text in both runs, and the second run's store holds it
    by_id_one, by_id_two = results(tmp_path / "one"), results(tmp_path / "two")
    with RunStore.open_readonly(tmp_path / "two" / "store.sqlite") as store:
        for prompt_id, result in by_id_two.items():
            assert result["compute"]["cached_calls"] == shared_per_prompt
            texts_one = {s["response"] for s in by_id_one[prompt_id]["samples"]}
            texts_two = [s["response"] for s in result["samples"]]
            assert sum(t in texts_one for t in texts_two) >= shared_per_prompt
            calls = store.calls_for(prompt_id)
            assert len(calls) == budget
            assert all(call.ok for call in calls.values())


async def test_the_same_strategy_again_with_the_cache_sends_nothing_and_gives_the_same_trees(
    tmp_path: Path,
) -> None:
    inputs = write_prompts(tmp_path / "p.jsonl", 4)
    cache = tmp_path / "generations.sqlite"
    async with FakeServer() as server:
        for run_dir in ("one", "two"):
            await run(
                settings(server.base_url, cache, "toa", 6),
                input_path=inputs,
                run_dir=tmp_path / run_dir,
            )
        assert server.stats()["total"] == 4 * 6
    one, two = results(tmp_path / "one"), results(tmp_path / "two")
    for prompt_id, result in one.items():
        assert result["samples"] == two[prompt_id]["samples"]
        assert two[prompt_id]["compute"]["cached_calls"] == 6


class StopAfter:
    """A progress sink that sets `stop` once `n` prompts have finished."""

    def __init__(self, n: int, stop: asyncio.Event) -> None:
        self.n, self.stop, self.finished = n, stop, 0

    def started(self, *, total: int, already_done: int) -> None:
        return None

    def prompt_finished(self, prompt_id: str, compute: Compute, *, ok: bool) -> None:
        self.finished += 1
        if self.finished >= self.n:
            self.stop.set()

    def bad_row(self, error: InputError) -> None:
        return None


def sent_hash(request: Any, specs: dict[str, AgentSpec]) -> str:
    """The request hash of a request the server received (what the engine stored for it)."""
    body = request.body
    messages = [Message(m["role"], m["content"]) for m in body["messages"]]
    fields = ("temperature", "top_p", "max_tokens", "stop", "seed")
    return request_hash(specs[request.agent], messages, {k: body[k] for k in fields if k in body})


async def test_resume_with_a_cache_never_pays_twice_and_replays_from_the_store(
    tmp_path: Path,
) -> None:
    inputs = write_prompts(tmp_path / "p.jsonl", 12)
    cache, run_dir = tmp_path / "generations.sqlite", tmp_path / "run"
    async with FakeServer(latency_ms=(5.0, 40.0)) as server:
        config = settings(server.base_url, cache, "toa", 6)
        stop = asyncio.Event()
        first = await run(
            config, input_path=inputs, run_dir=run_dir, progress=StopAfter(3, stop), stop=stop
        )
        assert first.interrupted
        with RunStore.open_readonly(run_dir / "store.sqlite") as store:
            committed = {
                call.request_hash: prompt_id
                for prompt_id in (f"p{i:02d}" for i in range(12))
                for call in store.calls_for(prompt_id).values()
            }
            # A prompt whose result write was queued as the stop came is committed (a queued
            # write is never withdrawn) without being counted in `first.finished`.
            done_first = store.summary().prompts_done
        assert first.finished <= done_first
        last = max(r.seq for r in server.requests)
        resumed = await run(config, input_path=inputs, run_dir=run_dir)
        specs = {s.name: s for s in config.agents}
        sent_after = [sent_hash(r, specs) for r in server.requests if r.seq > last]
    assert resumed.exit_code == 0
    assert sent_after
    assert not set(sent_after) & set(committed)  # no committed call was paid for again
    done = results(run_dir)
    assert len(done) == 12
    assert all(r["compute"]["calls"] == 6 for r in done.values())
    # the unfinished prompts replayed their committed calls from the run store
    replayed = sum(r["compute"]["replayed_calls"] for r in done.values())
    assert replayed == len(committed) - 6 * done_first
    assert resumed.compute.replayed_calls == replayed


async def test_the_cache_setting_may_change_on_resume(tmp_path: Path) -> None:
    base = settings("http://127.0.0.1:9/v1", None, "toa", 4)
    assert base.runner.cache is None
    with_cache = with_overrides(base, cache=str(tmp_path / "c.sqlite"))  # `toa run --cache`
    assert with_cache.runner.cache == str(tmp_path / "c.sqlite")
    assert with_cache.budget == 4

    inputs = write_prompts(tmp_path / "p.jsonl", 4)
    async with FakeServer() as server:
        first = settings(server.base_url, tmp_path / "a.sqlite", "toa", 4)
        await run(first, input_path=inputs, run_dir=tmp_path / "run", limit=2)
        for cache in (tmp_path / "b.sqlite", None):
            again = settings(server.base_url, cache, "toa", 4)
            report = await run(again, input_path=inputs, run_dir=tmp_path / "run")
            assert report.exit_code == 0
    assert len(results(tmp_path / "run")) == 4
    with GenerationCache(tmp_path / "a.sqlite") as a, GenerationCache(tmp_path / "b.sqlite") as b:
        assert (len(a), len(b)) == (2 * 4, 2 * 4)
