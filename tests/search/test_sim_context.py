"""The in-memory simulated context: determinism, faults, records, prompts."""

from __future__ import annotations

from collections import Counter

import pytest

from toa.errors import AgentUnavailableError, ServerError
from toa.testing.sim_context import SimulatedContext, request_kind, simulated_prompts
from toa.testing.world import World, decode_quality, encode_quality, prompt_family
from toa.types import Message, ScoreFailure


async def test_generate_is_deterministic_by_node_id(helps: World) -> None:
    messages = [Message("user", "Explain tides.")]
    first = await SimulatedContext(helps).generate("agent_a", messages, node_id=4)
    again = await SimulatedContext(helps).generate("agent_a", messages, node_id=4)
    other = await SimulatedContext(helps).generate("agent_a", messages, node_id=5)
    assert first.text == again.text
    assert first.text != other.text
    assert first.agent == "agent_a"
    assert first.usage.prompt_tokens == 2


async def test_score_reads_the_hidden_quality(ctx: SimulatedContext) -> None:
    prompt = simulated_prompts(1)[0]
    scores = await ctx.score(prompt, [f"x {encode_quality(0.25)}", "no marker"], node_ids=[1, 2])
    assert scores[0] == 0.25
    assert isinstance(scores[1], ScoreFailure)
    assert ctx.score_calls == [(1, 2)]


async def test_fault_injection_rates_and_unavailable_agents(helps: World) -> None:
    ctx = SimulatedContext(helps, generate_failure_rate=0.3, unavailable={"agent_c"}, seed=1)
    assert not ctx.is_available("agent_c")
    assert ctx.is_available("agent_a")
    failures = 0
    for node_id in range(400):
        try:
            await ctx.generate("agent_a", [Message("user", "q")], node_id=node_id)
        except ServerError:
            failures += 1
    assert 80 < failures < 160
    with pytest.raises(AgentUnavailableError):
        await ctx.generate("agent_c", [Message("user", "q")], node_id=0)
    assert ctx.stats()["total"] == 401
    assert ctx.stats()["by_agent"] == {"agent_a": 400, "agent_c": 1}


async def test_score_failures_are_failures_never_zero(helps: World) -> None:
    ctx = SimulatedContext(helps, score_failure_rate=1.0)
    prompt = simulated_prompts(1)[0]
    (score,) = await ctx.score(prompt, [f"x {encode_quality(0.9)}"], node_ids=[1])
    assert isinstance(score, ScoreFailure)


def test_request_kind_counts_quality_markers() -> None:
    one, two = encode_quality(0.1), encode_quality(0.2)
    assert request_kind("plain") == "fresh"
    assert request_kind(f"refine {one}") == "refine"
    assert request_kind(f"{one} {two}") == "aggregate"


def test_simulated_prompts_have_balanced_families_and_stable_ids() -> None:
    prompts = simulated_prompts(9, seed=2)
    assert [p.id for p in prompts][:2] == ["sim-2-0", "sim-2-1"]
    assert Counter(prompt_family(p.text, 3) for p in prompts) == {0: 3, 1: 3, 2: 3}
    assert simulated_prompts(9, seed=2) == prompts
    assert decode_quality(prompts[0].text) is None


def test_bad_settings(helps: World) -> None:
    with pytest.raises(ValueError, match="generate_failure_rate"):
        SimulatedContext(helps, generate_failure_rate=1.5)
    with pytest.raises(KeyError, match="unknown agent"):
        SimulatedContext(helps, agents=["agent_x"])


async def test_request_sample_keys_give_common_random_numbers_across_strategies() -> None:
    from toa.search import ParallelEnsemble, RandomSampling, SingleAgentConfig

    world = World.named("helps")
    prompt = simulated_prompts(1)[0]
    one = SimulatedContext(world, sample_key="request")
    two = SimulatedContext(world, sample_key="request")
    alone = await RandomSampling(SingleAgentConfig(agent="agent_b")).run(
        prompt, one, budget=3, seed=0
    )
    mixed = await ParallelEnsemble().run(prompt, two, budget=9, seed=0)
    texts = [n.text for n in alone.responses()]
    assert texts == [n.text for n in mixed.responses() if n.agent == "agent_b"]
    assert len(set(texts)) == 3  # repeated requests still draw different samples
    by_node = await RandomSampling(SingleAgentConfig(agent="agent_b")).run(
        prompt, SimulatedContext(world), budget=3, seed=0
    )
    assert [n.text for n in by_node.responses()] != texts  # the default keys by node id
    with pytest.raises(ValueError, match="sample_key"):
        SimulatedContext(world, sample_key="other")  # type: ignore[arg-type]
