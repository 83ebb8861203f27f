"""The fake server's judge agents: verdicts, OpenAI logprob shapes, validation and accounting.

Plain aiohttp on purpose, as in test_fake_server.py: these pin the wire shapes the judge reward
and the client's logprob parsing rely on.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from toa.testing import FakeServer, World, build_world, encode_quality
from toa.testing.world import judge_verdict

TIMEOUT = aiohttp.ClientTimeout(total=10)
YES_NO = "Question: 2+2?\nAnswer: four {marker}\nIs it correct? Yes or No."
SCORE = "Question: 2+2?\nAnswer: four {marker}\nRate it from 1 to 10."


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
        yield client


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    async with FakeServer(build_world("helps", "agent_a", judges="judge")) as fake:
        yield fake


async def post(
    session: aiohttp.ClientSession, server: FakeServer, body: dict[str, Any], path: str
) -> tuple[int, dict[str, Any]]:
    async with session.post(server.base_url + path, json=body) as response:
        return response.status, await response.json()


def chat(text: str, **fields: Any) -> dict[str, Any]:
    return {"model": "judge", "messages": [{"role": "user", "content": text}], **fields}


def test_verdicts() -> None:
    assert judge_verdict(YES_NO.format(marker=encode_quality(0.5))).text == "Yes"
    assert judge_verdict(YES_NO.format(marker=encode_quality(0.499999))).text == "No"
    assert judge_verdict(SCORE.format(marker=encode_quality(0.5))).text == "Score: 6"
    assert judge_verdict(SCORE.format(marker=encode_quality(0.0))).text == "Score: 1"
    assert judge_verdict("on a 1-10 scale " + encode_quality(1.0)).text == "Score: 10"
    two = f"reference {encode_quality(0.9)} answer {encode_quality(0.1)} Yes or No?"
    assert judge_verdict(two).quality == 0.1  # the last marker is the one judged
    assert judge_verdict("no marker").mode == "unsure"


def test_build_world_adds_judges() -> None:
    world = build_world("helps", "judge,qwen", judges="grader, critic")
    assert world.agent_names == ("judge", "qwen", "grader", "critic")
    assert [a.judge for a in world.agents] == [False, False, True, True]
    # judges take no turn: "judge" here is a plain agent with agent_a's profile, as before
    assert world.profile("judge").fresh_mean == World.named("helps").profile("agent_a").fresh_mean
    assert build_world("hurts", judges=["j"]).agent_names == ("agent_a", "agent_b", "agent_c", "j")
    with pytest.raises(ValueError, match="unique"):
        build_world("helps", "a,b", judges="b")


async def test_chat_logprobs_shape(session: aiohttp.ClientSession, server: FakeServer) -> None:
    text = YES_NO.format(marker=encode_quality(0.8))
    status, answer = await post(
        session, server, chat(text, logprobs=True, top_logprobs=5), "/chat/completions"
    )
    assert status == 200
    (choice,) = answer["choices"]
    assert choice["message"] == {"role": "assistant", "content": "Yes"}
    assert choice["finish_reason"] == "stop"
    (token,) = choice["logprobs"]["content"]
    assert token["token"] == "Yes"
    assert token["logprob"] == pytest.approx(math.log(0.8))
    assert token["bytes"] == [89, 101, 115]
    assert [(t["token"], t["logprob"]) for t in token["top_logprobs"]] == [
        ("Yes", pytest.approx(math.log(0.8))),
        ("No", pytest.approx(math.log(0.2))),
    ]
    assert choice["logprobs"]["refusal"] is None


async def test_completion_logprobs_shape(
    session: aiohttp.ClientSession, server: FakeServer
) -> None:
    body = {"model": "judge", "prompt": SCORE.format(marker=encode_quality(0.4)), "logprobs": 1}
    status, answer = await post(session, server, body, "/completions")
    assert status == 200
    (choice,) = answer["choices"]
    assert choice["text"] == "Score: 5"
    assert choice["logprobs"] == {
        "tokens": ["Score", ":", " 5"],
        "token_logprobs": [0.0, 0.0, 0.0],
        "top_logprobs": [{"Score": 0.0}, {":": 0.0}, {" 5": 0.0}],
        "text_offset": [0, 5, 6],
    }


async def test_clamped_and_cut(session: aiohttp.ClientSession, server: FakeServer) -> None:
    text = YES_NO.format(marker=encode_quality(0.0))
    status, answer = await post(
        session, server, chat(text, logprobs=True, top_logprobs=1), "/chat/completions"
    )
    assert status == 200
    (token,) = answer["choices"][0]["logprobs"]["content"]
    assert (token["token"], token["logprob"]) == ("No", pytest.approx(math.log(1 - 1e-6)))
    assert [t["token"] for t in token["top_logprobs"]] == ["No"]
    assert token["top_logprobs"][0]["logprob"] == pytest.approx(math.log(1 - 1e-6))
    text = SCORE.format(marker=encode_quality(0.9))
    _, answer = await post(session, server, chat(text, max_tokens=2), "/chat/completions")
    assert answer["choices"][0]["message"]["content"] == "Score:"
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["choices"][0]["logprobs"] is None


@pytest.mark.parametrize(
    ("path", "fields", "param"),
    [
        ("/chat/completions", {"logprobs": "yes"}, "logprobs"),
        ("/chat/completions", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ("/completions", {"logprobs": True}, "logprobs"),
        ("/completions", {"logprobs": -1}, "logprobs"),
    ],
)
async def test_bad_logprob_requests_are_refused(
    session: aiohttp.ClientSession,
    server: FakeServer,
    path: str,
    fields: dict[str, Any],
    param: str,
) -> None:
    body = chat("Yes or No?") if path == "/chat/completions" else {"model": "judge", "prompt": "?"}
    status, answer = await post(session, server, {**body, **fields}, path)
    assert status == 400
    assert answer["error"]["param"] == param


async def test_judge_requests_are_their_own_kind(
    session: aiohttp.ClientSession, server: FakeServer
) -> None:
    marked = YES_NO.format(marker=encode_quality(0.7))
    for text in (marked, "no marker", f"{marked} {encode_quality(0.2)}"):
        status, _ = await post(session, server, chat(text), "/chat/completions")
        assert status == 200
    fresh = {"model": "agent_a", "messages": [{"role": "user", "content": "hi"}], "logprobs": 3}
    status, answer = await post(session, server, fresh, "/chat/completions")
    assert status == 200
    assert answer["choices"][0]["logprobs"] is None  # other agents ignore logprobs, as before
    stats = server.stats()
    assert stats["by_kind"] == {"fresh": 1, "refine": 0, "aggregate": 0, "judge": 3}
    assert stats["by_agent"] == {"agent_a": 1, "judge": 3}
    assert [r.kind for r in server.requests] == ["judge", "judge", "judge", "fresh"]
    assert all(r.quality is None for r in server.requests[:3])
    server.reset_stats()
    assert server.stats()["by_kind"] == {"fresh": 0, "refine": 0, "aggregate": 0, "judge": 0}


async def test_omit_logprobs(session: aiohttp.ClientSession) -> None:
    async with FakeServer(build_world(judges="judge"), omit_logprobs=True) as server:
        text = YES_NO.format(marker=encode_quality(0.3))
        _, answer = await post(
            session, server, chat(text, logprobs=True, top_logprobs=2), "/chat/completions"
        )
        assert answer["choices"][0]["message"]["content"] == "No"
        assert answer["choices"][0]["logprobs"] is None
