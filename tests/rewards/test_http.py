"""The `http` reward against a loopback server speaking vLLM's, TEI's and custom JSON shapes.

Each test checks what the server received (path, body) and what came back, failures included:
a failed or malformed reply gives `ScoreFailure`s naming the cause, never a 0.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from toa.config.rewards import HttpRewardConfig
from toa.errors import ConfigError
from toa.rewards import BatchingReward, BatchScorer, HttpRewardModel, RewardModel
from toa.rewards.http import MalformedReply, extract_path
from toa.types import Message, Prompt, ScoreFailure

Reply = tuple[int, Any]
Responder = Callable[[str, Any], Reply]

PROMPT = Prompt.from_text("p1", "What is 2+2?")
FAST = {"max_attempts": 3, "base_delay_s": 0.001, "max_delay_s": 0.01}


@dataclass
class Received:
    path: str
    body: Any
    headers: dict[str, str]


@dataclass
class RewardServer:
    """Records every POST and answers with `respond(path, body) -> (status, json)`."""

    respond: Responder = lambda path, body: (404, {"error": "no responder"})
    received: list[Received] = field(default_factory=list)
    base_url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received.append(Received(request.path, body, dict(request.headers)))
        status, payload = self.respond(request.path, body)
        return web.json_response(payload, status=status)


@pytest.fixture
async def server() -> AsyncIterator[RewardServer]:
    state = RewardServer()
    app = web.Application()
    app.router.add_post("/{tail:.*}", state.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield state
    finally:
        await runner.cleanup()


def config(server: RewardServer, protocol: str, **kw: Any) -> HttpRewardConfig:
    fields: dict[str, Any] = {
        "protocol": protocol,
        "base_url": server.base_url,
        "model": "rm",
        "timeout_s": 5.0,
        "retry": FAST,
    }
    fields.update(kw)
    return HttpRewardConfig(**fields)


async def scored(cfg: HttpRewardConfig, responses: list[str], prompt: Prompt = PROMPT) -> list[Any]:
    model = cfg.build()
    try:
        return await model.score(prompt, responses)
    finally:
        await model.aclose()


def failures_only(scores: list[Any]) -> list[ScoreFailure]:
    assert all(isinstance(s, ScoreFailure) for s in scores), scores
    return scores


# ---------------------------------------------------------------------------------- vLLM


async def test_vllm_classify_sends_one_batch_and_orders_by_index(server: RewardServer) -> None:
    def respond(path: str, body: Any) -> Reply:
        data = [
            {"index": 1, "label": "good", "probs": [0.2, 0.8], "num_classes": 2},
            {"index": 0, "label": "bad", "probs": [0.9, 0.1], "num_classes": 2},
        ]
        return 200, {"id": "classify-1", "object": "list", "model": "rm", "data": data}

    server.respond = respond
    scores = await scored(config(server, "vllm-classify", label_index=1), ["4", "5"])
    assert scores == [0.1, 0.8]
    (got,) = server.received
    assert got.path == "/classify"
    assert got.body == {"model": "rm", "input": ["What is 2+2?\n\n4", "What is 2+2?\n\n5"]}


async def test_vllm_classify_messages_one_request_per_response(server: RewardServer) -> None:
    server.respond = lambda path, body: (
        200,
        {"data": [{"index": 0, "label": "x", "probs": [0.25, 0.75], "num_classes": 2}]},
    )
    cfg = config(server, "vllm-classify", input_format="messages", use_activation=False)
    assert await scored(cfg, ["4", "5"]) == [0.25, 0.25]
    assert [r.body for r in server.received] == [
        {
            "model": "rm",
            "messages": [
                {"role": "user", "content": "What is 2+2?"},
                {"role": "assistant", "content": answer},
            ],
            "use_activation": False,
        }
        for answer in ("4", "5")
    ]


async def test_vllm_pooling_reward_model_over_messages(server: RewardServer) -> None:
    rewards = iter([3.5, -1.25])
    server.respond = lambda path, body: (
        200,
        {"object": "list", "data": [{"index": 0, "object": "pooling", "data": [next(rewards)]}]},
    )
    prompt = Prompt("p2", (Message("system", "Be brief."), Message("user", "Hi?")))
    cfg = config(server, "vllm-pooling", pooling_task="classify", use_activation=False)
    assert await scored(cfg, ["Hello.", "Go away."], prompt) == [3.5, -1.25]
    first = server.received[0]
    assert first.path == "/pooling"
    assert first.body == {
        "model": "rm",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi?"},
            {"role": "assistant", "content": "Hello."},
        ],
        "task": "classify",
        "use_activation": False,
    }


@pytest.mark.parametrize(("reduce", "expected"), [("last", 3.0), ("sum", 6.0), ("mean", 2.0)])
async def test_vllm_pooling_per_token_outputs(
    server: RewardServer, reduce: str, expected: float
) -> None:
    per_token = [[1.0], [2.0], [3.0]]
    server.respond = lambda path, body: (200, {"data": [{"index": 0, "data": per_token}]})
    cfg = config(server, "vllm-pooling", input_format="text", token_reduce=reduce)
    assert await scored(cfg, ["4"]) == [expected]
    assert server.received[0].body == {"model": "rm", "input": ["What is 2+2?\n\n4"]}


async def test_vllm_score_text_pairs_and_mixed_prompts(server: RewardServer) -> None:
    def respond(path: str, body: Any) -> Reply:
        n = len(body["text_2"])
        data = [{"index": i, "object": "score", "score": 0.5 + i / 10} for i in reversed(range(n))]
        return 200, {"object": "list", "model": "rm", "data": data}

    server.respond = respond
    model = config(server, "vllm-score").build()
    try:
        assert await model.score(PROMPT, ["4", "5"]) == [0.5, 0.6]
        other = Prompt.from_text("p3", "Capital of France?")
        assert await model.score_batch([(PROMPT, "4"), (other, "Paris")]) == [0.5, 0.6]
    finally:
        await model.aclose()
    assert [(r.path, r.body) for r in server.received] == [
        ("/score", {"model": "rm", "text_1": "What is 2+2?", "text_2": ["4", "5"]}),
        (
            "/score",
            {
                "model": "rm",
                "text_1": ["What is 2+2?", "Capital of France?"],
                "text_2": ["4", "Paris"],
            },
        ),
    ]


# ----------------------------------------------------------------------------------- TEI


async def test_tei_predict_pairs_by_label(server: RewardServer) -> None:
    server.respond = lambda path, body: (
        200,
        [
            [{"label": "LABEL_1", "score": 0.7}, {"label": "LABEL_0", "score": 0.3}],
            [{"label": "LABEL_0", "score": 0.6}, {"label": "LABEL_1", "score": 0.4}],
        ],
    )
    cfg = config(server, "tei-predict", model=None, label="LABEL_1", raw_scores=True)
    assert await scored(cfg, ["4", "5"]) == [0.7, 0.4]
    (got,) = server.received
    assert got.path == "/predict"
    assert got.body == {
        "inputs": [["What is 2+2?", "4"], ["What is 2+2?", "5"]],
        "raw_scores": True,
    }


async def test_tei_predict_needs_a_label_when_there_are_several(server: RewardServer) -> None:
    server.respond = lambda path, body: (
        200,
        [[{"label": "a", "score": 0.7}, {"label": "b", "score": 0.3}]],
    )
    (failure,) = failures_only(await scored(config(server, "tei-predict"), ["4"]))
    assert failure.error_type == "MalformedReply"
    assert "has 2 labels: set `label`" in failure.message


async def test_tei_rerank_maps_scores_back_by_index(server: RewardServer) -> None:
    server.respond = lambda path, body: (
        200,
        [{"index": 2, "score": 0.9}, {"index": 0, "score": 0.5}, {"index": 1, "score": 0.1}],
    )
    assert await scored(config(server, "tei-rerank", model=None), ["a", "b", "c"]) == [
        0.5,
        0.1,
        0.9,
    ]
    (got,) = server.received
    assert got.path == "/rerank"
    assert got.body == {
        "query": "What is 2+2?",
        "texts": ["a", "b", "c"],
        "raw_scores": False,
        "return_text": False,
    }


# ---------------------------------------------------------------------------------- JSON


async def test_json_batched_template_and_path(server: RewardServer) -> None:
    server.respond = lambda path, body: (
        200,
        {"result": [{"value": 1.5 * (i + 1)} for i in range(len(body["answers"]))]},
    )
    cfg = config(
        server,
        "json",
        path="/v2/grade",
        request_template={"q": "Q: {prompt}", "answers": "{responses}", "opts": {"m": "{model}"}},
        response_path="result.*.value",
        extra_body={"strict": True},
    )
    assert await scored(cfg, ["4", "5"]) == [1.5, 3.0]
    (got,) = server.received
    assert got.path == "/v2/grade"
    assert got.body == {
        "q": "Q: What is 2+2?",
        "answers": ["4", "5"],
        "opts": {"m": "rm"},
        "strict": True,
    }


async def test_json_one_request_per_response(server: RewardServer) -> None:
    server.respond = lambda path, body: (200, {"out": {"scores": [len(body["text"])]}})
    cfg = config(
        server,
        "json",
        request_template={"text": "{prompt} => {response}"},
        response_path="out.scores.0",
    )
    assert await scored(cfg, ["4", "22"]) == [17.0, 18.0]
    assert [r.body for r in server.received] == [
        {"text": "What is 2+2? => 4"},
        {"text": "What is 2+2? => 22"},
    ]


def test_extract_path() -> None:
    data = {"data": [{"score": 1}, {"score": 2}], "x": {"y": [5, 6]}}
    assert extract_path(data, "data.*.score") == [1, 2]
    assert extract_path(data, "x.y.1") == 6
    with pytest.raises(MalformedReply, match=r"missing 'data\.0\.value'"):
        extract_path(data, "data.*.value")
    with pytest.raises(MalformedReply, match="expected a list at x"):
        extract_path(data, "x.*")


# ------------------------------------------------------------------------------ failures


async def test_server_error_then_success_through_retries(server: RewardServer) -> None:
    calls = 0

    def respond(path: str, body: Any) -> Reply:
        nonlocal calls
        calls += 1
        if calls == 1:
            return 500, {"error": {"message": "overloaded"}}
        return 200, {"data": [{"index": 0, "score": 0.42}]}

    server.respond = respond
    assert await scored(config(server, "vllm-score"), ["4"]) == [0.42]
    assert len(server.received) == 2
    assert server.received[0].body == server.received[1].body


async def test_persistent_failure_fails_every_response(server: RewardServer) -> None:
    server.respond = lambda path, body: (503, {"error": {"message": "model is loading"}})
    got = failures_only(await scored(config(server, "vllm-classify"), ["4", "5"]))
    assert len(got) == 2
    assert all(f.error_type == "ServerError" for f in got)
    assert "request failed" in got[0].message
    assert "model is loading" in got[0].message
    assert len(server.received) == FAST["max_attempts"]


async def test_client_error_is_not_retried(server: RewardServer) -> None:
    server.respond = lambda path, body: (404, {"detail": "Not Found"})
    (failure,) = failures_only(await scored(config(server, "vllm-pooling"), ["4"]))
    assert failure.error_type == "InvalidRequestError"
    assert "POST /pooling" in failure.message
    assert len(server.received) == 1


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"data": [{"index": 0, "score": 0.1}]}, "expected `data` to be a list of 2 result(s)"),
        ({"items": []}, "expected `data` to be a list of 2"),
        ({"data": [{"index": 0}, {"index": 1, "score": 1}]}, "finite number at data[0].score"),
        ({"data": [{"index": 0, "score": "high"}, {"index": 1, "score": 1}]}, "got str 'high'"),
        ({"data": [{"index": 0, "score": 1}, {"index": 0, "score": 1}]}, "indices 0..1"),
        ([1, 2], "expected an object with `data`"),
    ],
)
async def test_malformed_reply_fails_every_response(
    server: RewardServer, payload: Any, expected: str
) -> None:
    server.respond = lambda path, body: (200, payload)
    got = failures_only(await scored(config(server, "vllm-score"), ["4", "5"]))
    assert {f.error_type for f in got} == {"MalformedReply"}
    assert expected in got[0].message
    assert "malformed reply" in got[0].message


async def test_non_finite_and_out_of_range_label(server: RewardServer) -> None:
    server.respond = lambda path, body: (200, {"data": [{"index": 0, "probs": [math.inf]}]})
    (failure,) = failures_only(await scored(config(server, "vllm-classify"), ["4"]))
    assert "finite number at data[0].probs[0]" in failure.message
    server.respond = lambda path, body: (200, {"data": [{"index": 0, "probs": [0.5]}]})
    (failure,) = failures_only(await scored(config(server, "vllm-classify", label_index=1), ["4"]))
    assert "no label_index 1" in failure.message


async def test_large_calls_are_split_and_keep_order(server: RewardServer) -> None:
    server.respond = lambda path, body: (
        200,
        {"data": [{"index": i, "probs": [float(t[-1])]} for i, t in enumerate(body["input"])]},
    )
    cfg = config(server, "vllm-classify", max_batch_size=2)
    assert await scored(cfg, ["1", "2", "3", "4", "5"]) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert sorted(len(r.body["input"]) for r in server.received) == [1, 2, 2]


async def test_api_key_sent_and_empty_call_sends_nothing(
    server: RewardServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOA_RM_KEY", "sk-reward-1")
    server.respond = lambda path, body: (200, {"data": [{"index": 0, "score": 1.0}]})
    model = config(server, "vllm-score", api_key_env="TOA_RM_KEY").build()
    assert isinstance(model, RewardModel)
    assert isinstance(model, HttpRewardModel)
    try:
        assert await model.score(PROMPT, []) == []
        assert server.received == []
        assert await model.score(PROMPT, ["4"]) == [1.0]
    finally:
        await model.aclose()
        await model.aclose()
    assert server.received[0].headers["Authorization"] == "Bearer sk-reward-1"


# -------------------------------------------------------------------------------- config


def test_config_refuses_settings_of_other_protocols() -> None:
    base = {"base_url": "http://127.0.0.1:1"}
    with pytest.raises(ValidationError, match="label does not apply to protocol 'vllm-score'"):
        HttpRewardConfig(protocol="vllm-score", label="good", **base)
    with pytest.raises(ValidationError, match="input_format for 'tei-predict'"):
        HttpRewardConfig(protocol="tei-predict", input_format="messages", **base)
    with pytest.raises(ValidationError, match="needs request_template and response_path"):
        HttpRewardConfig(protocol="json", response_path="score", **base)
    with pytest.raises(ValidationError, match="mixes"):
        HttpRewardConfig(
            protocol="json",
            request_template={"a": "{responses}", "b": "{response}"},
            response_path="s",
            **base,
        )
    with pytest.raises(ValidationError, match="must be a whole string"):
        HttpRewardConfig(
            protocol="json", request_template={"a": "all: {responses}"}, response_path="s", **base
        )
    with pytest.raises(ValidationError, match="extra"):
        HttpRewardConfig(protocol="vllm-score", temperature=0.0, **base)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="http"):
        HttpRewardConfig(protocol="vllm-score", base_url="localhost:8000")


def test_missing_api_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOA_RM_ABSENT", raising=False)
    cfg = HttpRewardConfig(
        protocol="vllm-score", base_url="http://127.0.0.1:1", api_key_env="TOA_RM_ABSENT"
    )
    with pytest.raises(ConfigError, match="TOA_RM_ABSENT"):
        cfg.build()


async def test_composes_with_the_batcher(server: RewardServer) -> None:
    server.respond = lambda path, body: (
        200,
        {"data": [{"index": i, "probs": [float(len(t))]} for i, t in enumerate(body["input"])]},
    )
    model = config(server, "vllm-classify", text_template="{response}").build()
    assert isinstance(model, BatchScorer)
    batcher = BatchingReward(model, max_batch=8, max_wait_ms=20.0)
    prompts = [Prompt.from_text(f"p{i}", f"q{i}") for i in range(4)]
    try:
        results = await asyncio.gather(
            *(batcher.score(p, ["a" * (i + 1)]) for i, p in enumerate(prompts))
        )
    finally:
        await batcher.aclose()
        await model.aclose()
    assert results == [[1.0], [2.0], [3.0], [4.0]]
    assert len(server.received) == 1  # one request for the four concurrent callers
