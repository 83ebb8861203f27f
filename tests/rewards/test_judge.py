"""The `judge` reward against the fake server's judge agent: logprobs, plain text, both modes."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from toa.agents import AgentMode, AgentPool, AgentSpec, RetryPolicy
from toa.config.rewards import JudgeRewardConfig
from toa.errors import ConfigError
from toa.rewards import JudgeReward, RewardModel
from toa.rewards.judge import parse_score, yes_probability
from toa.testing import FakeServer, build_world, encode_quality
from toa.types import Prompt, ScoreFailure

FAST = RetryPolicy(max_attempts=2, base_delay_s=0.001, max_delay_s=0.01)
PROMPT = Prompt.from_text("p1", "What is 2+2?")
QUALITIES = (0.05, 0.3, 0.5, 0.73, 0.99)


def answers(*qualities: float) -> list[str]:
    return [f"It is four. {encode_quality(q)}" for q in qualities]


def spec(server: FakeServer, *, model: str = "judge", mode: AgentMode = "chat") -> AgentSpec:
    return AgentSpec("judge", (server.base_url,), model, mode=mode, retry=FAST, timeout_s=5.0)


async def judged(reward: JudgeReward, responses: list[str], prompt: Prompt = PROMPT) -> list[Any]:
    try:
        return await reward.score(prompt, responses)
    finally:
        await reward.aclose()


def failures_only(scores: list[Any]) -> list[ScoreFailure]:
    assert all(isinstance(s, ScoreFailure) for s in scores), scores
    return scores


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    async with FakeServer(build_world("helps", "agent_a", judges="judge")) as s:
        yield s


# ----------------------------------------------------------------------------- yes / no


@pytest.mark.parametrize("mode", ["chat", "completion"])
async def test_yes_no_is_p_yes_from_top_logprobs(server: FakeServer, mode: AgentMode) -> None:
    reward = JudgeReward(spec(server, mode=mode), top_logprobs=5)
    assert isinstance(reward, RewardModel)
    scores = await judged(reward, answers(*QUALITIES))
    assert scores == pytest.approx(list(QUALITIES), abs=1e-9)
    first = server.requests[0].body
    assert first["temperature"] == 0.0
    assert first["max_tokens"] == 1
    if mode == "chat":
        assert (first["logprobs"], first["top_logprobs"]) == (True, 5)
        assert "Reply with one word: Yes or No." in first["messages"][0]["content"]
    else:
        assert first["logprobs"] == 5
        assert "Yes or No" in first["prompt"]
    stats = server.stats()
    assert stats["by_kind"] == {"fresh": 0, "refine": 0, "aggregate": 0, "judge": len(QUALITIES)}


async def test_no_yes_or_no_among_top_tokens_is_a_failure(server: FakeServer) -> None:
    (failure,) = failures_only(await judged(JudgeReward(spec(server)), ["no marker here"]))
    assert failure.error_type == "NoYesNoToken"
    assert "neither yes nor no" in failure.message
    assert "['I']" in failure.message


async def test_without_logprobs_falls_back_to_a_score() -> None:
    async with FakeServer(build_world("helps", judges="judge"), omit_logprobs=True) as plain:
        scores = await judged(JudgeReward(spec(plain)), answers(0.0, 0.5, 1.0))
        # The 1-10 score N is mapped to (N - 1) / 9: N = 1, 6 (1 + 4.5 rounded up), 10.
        assert scores == pytest.approx([0.0, 5 / 9, 1.0])
        bodies = [r.body for r in plain.requests]
        assert sum("logprobs" in b for b in bodies) == 3  # the yes/no tries
        assert sum("from 1 to 10" in b["messages"][0]["content"] for b in bodies) == 3

        failed = failures_only(
            await judged(JudgeReward(spec(plain), fallback="fail"), answers(0.9))
        )
        assert failed[0].error_type == "NoLogprobs"
        assert "no top logprobs" in failed[0].message


# -------------------------------------------------------------------------------- score


@pytest.mark.parametrize("mode", ["chat", "completion"])
async def test_score_mode_parses_the_plain_text(server: FakeServer, mode: AgentMode) -> None:
    scores = await judged(JudgeReward(spec(server, mode=mode), mode="score"), answers(*QUALITIES))
    assert scores == [float(math.floor(1 + 9 * q + 0.5)) for q in QUALITIES]
    for received in server.requests:
        assert "logprobs" not in received.body
        assert received.body["max_tokens"] == 16


async def test_unparsable_reply_is_a_failure_not_a_score(server: FakeServer) -> None:
    # agent_a is not a judge: it answers with filler text and a quality marker, no score.
    scores = await judged(JudgeReward(spec(server, model="agent_a"), mode="score"), answers(0.8))
    (failure,) = failures_only(scores)
    assert failure.error_type == "UnparsableJudgeReply"
    assert "holds no 1-10 score" in failure.message
    assert "agent_a:" in failure.message  # the reply is quoted

    (failure,) = failures_only(await judged(JudgeReward(spec(server), mode="score"), ["?"]))
    assert "'I cannot judge this response.'" in failure.message


async def test_failed_request_is_a_failure(server: FakeServer) -> None:
    server.kill_agent("judge")
    for mode in ("yes_no", "score"):
        (failure,) = failures_only(await judged(JudgeReward(spec(server), mode=mode), answers(1)))
        assert failure.error_type == "ServerError"
        assert failure.message.startswith("judge request failed: agent 'judge'")


# ---------------------------------------------------------------------------- templates


async def test_reference_answer_is_shown_when_the_prompt_has_one(server: FakeServer) -> None:
    with_gold = Prompt.from_text("p2", "What is 2+2?", gold_answer="4")
    await judged(JudgeReward(spec(server)), answers(0.6), with_gold)
    await judged(JudgeReward(spec(server)), answers(0.6), PROMPT)
    with_ref, without = (r.body["messages"][0]["content"] for r in server.requests)
    assert "Reference answer (take it as correct):\n4\n" in with_ref
    assert "Reference answer" not in without
    assert with_ref.index("4\n") < with_ref.index("It is four.")


async def test_custom_template_and_shared_client(server: FakeServer) -> None:
    template = "Q: {question}\nA: {response}\nCorrect? Yes or No."
    async with AgentPool([spec(server)]) as pool:
        reward = JudgeReward(pool["judge"], yes_no_template=template)
        assert await reward.score(PROMPT, answers(0.25)) == pytest.approx([0.25])
        await reward.aclose()  # a shared client stays open
        assert await reward.score(PROMPT, answers(0.75)) == pytest.approx([0.75])
    content = server.requests[0].body["messages"][0]["content"]
    assert content == f"Q: What is 2+2?\nA: {answers(0.25)[0]}\nCorrect? Yes or No."


def test_templates_are_checked() -> None:
    agent = AgentSpec("judge", ("http://127.0.0.1:1/v1",), "judge")
    with pytest.raises(ValueError, match="include"):
        JudgeReward(agent, yes_no_template="Is {question} answered?")
    with pytest.raises(ValueError, match="among"):
        JudgeReward(agent, score_template="{response} {unknown}")
    with pytest.raises(ValidationError, match="not a valid format string"):
        JudgeRewardConfig(agent="judge", score_template="{response} {")


# ------------------------------------------------------------------------------- config


async def test_config_with_inline_agent(server: FakeServer) -> None:
    config = JudgeRewardConfig.model_validate(
        {
            "type": "judge",
            "mode": "score",
            "agent": {"base_url": server.base_url, "model": "judge", "timeout_s": 5},
        }
    )
    assert await judged(config.build(), answers(0.5)) == [6.0]


async def test_config_with_named_agent(server: FakeServer) -> None:
    config = JudgeRewardConfig(agent="grader", top_logprobs=2)
    named = AgentSpec("grader", (server.base_url,), "judge", retry=FAST)
    assert await judged(config.build({"grader": named}), answers(0.4)) == pytest.approx([0.4])
    assert server.requests[0].body["top_logprobs"] == 2
    with pytest.raises(ConfigError, match="'grader' is not a configured agent"):
        config.build({})


# -------------------------------------------------------------------------------- units


def test_yes_probability_normalises_variants() -> None:
    alternatives = [
        ("Yes", math.log(0.3)),
        (" yes", math.log(0.1)),
        ("▁NO", math.log(0.4)),
        ("Maybe", math.log(0.2)),
    ]
    assert yes_probability(alternatives) == pytest.approx(0.4 / 0.8)
    assert yes_probability([("Maybe", 0.0)]) is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Score: 7", 7.0),
        ("**Score:** 8", 8.0),
        ("Rating: 6/10", 6.0),
        ("I'd say 9 out of 10.", 9.0),
        ("3/10", 3.0),
        (" 10 ", 10.0),
        ("Reasoning... Score: 2\nFinal score: 5", 5.0),
    ],
)
def test_parse_score(text: str, value: float) -> None:
    assert parse_score(text) == value


@pytest.mark.parametrize(
    ("text", "why"),
    [("Looks fine to me.", "holds no 1-10 score"), ("Score: 11", "outside 1-10"), ("", "no")],
)
def test_parse_score_failures(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_score(text)
