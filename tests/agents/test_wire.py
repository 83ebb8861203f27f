"""Request building, response parsing and status translation (pure functions)."""

from __future__ import annotations

import json

import pytest

from toa.agents import AgentSpec
from toa.agents.wire import build_body, error_for_status, parse_choice, parse_retry_after
from toa.errors import (
    AgentTimeoutError,
    AuthenticationError,
    ContextLengthError,
    InvalidRequestError,
    RateLimitError,
    ResponseFormatError,
    ServerError,
    is_retryable,
)
from toa.types import Message, SamplingParams


def spec(**kw: object) -> AgentSpec:
    base: dict[str, object] = {"name": "a", "base_urls": ("http://127.0.0.1:1/v1",), "model": "m"}
    base.update(kw)
    return AgentSpec(**base)  # type: ignore[arg-type]


def test_chat_body_has_messages_and_sampling() -> None:
    body = build_body(
        spec(extra_body={"top_k": 20}),
        [Message("system", "be brief"), Message("user", "hi")],
        SamplingParams(temperature=0.3, top_p=0.9, max_tokens=7, stop="###", seed=4),
    )
    assert body == {
        "model": "m",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 7,
        "stop": ["###"],  # a bare string becomes a one-item list, never characters
        "seed": 4,
        "top_k": 20,
    }


def test_completion_body_renders_template() -> None:
    s = spec(mode="completion", prompt_template="Q: {prompt}\nA:")
    body = build_body(s, [Message("user", "2+2?")], SamplingParams())
    assert body["prompt"] == "Q: 2+2?\nA:"
    assert "messages" not in body


def test_completion_template_with_system_and_turns() -> None:
    s = spec(mode="completion", prompt_template="[{system}]\n{prompt}")
    msgs = [Message("system", "S"), Message("user", "u1"), Message("assistant", "a1")]
    msgs.append(Message("user", "u2"))
    assert (
        build_body(s, msgs, SamplingParams())["prompt"] == "[S]\nUser: u1\nAssistant: a1\nUser: u2"
    )
    plain = spec(mode="completion")
    assert (
        build_body(plain, [Message("system", "S"), Message("user", "u")], SamplingParams())[
            "prompt"
        ]
        == "S\nUser: u"
    )


def test_parse_chat_and_completion_and_missing_usage() -> None:
    chat = json.dumps(
        {
            "choices": [{"message": {"content": "yo"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        }
    ).encode()
    text, finish, usage, logprobs = parse_choice(spec(), chat)
    assert (text, finish, usage.prompt_tokens, usage.completion_tokens) == ("yo", "stop", 3, 1)
    assert logprobs is None
    comp = json.dumps({"choices": [{"text": "t", "finish_reason": "length"}]}).encode()
    text, finish, usage, _ = parse_choice(spec(mode="completion"), comp)
    assert (text, finish, usage.missing) == ("t", "length", True)


def test_parse_top_logprobs_both_shapes() -> None:
    chat = {
        "choices": [
            {
                "message": {"content": "Yes"},
                "logprobs": {
                    "content": [
                        {
                            "token": "Yes",
                            "logprob": -0.1,
                            "top_logprobs": [
                                {"token": "No", "logprob": -2.5},
                                {"token": "Yes", "logprob": -0.1},
                            ],
                        }
                    ]
                },
            }
        ]
    }
    *_, logprobs = parse_choice(spec(), json.dumps(chat).encode())
    assert logprobs == ((("Yes", -0.1), ("No", -2.5)),)
    legacy = {
        "choices": [{"text": " No", "logprobs": {"top_logprobs": [{" No": -0.2, " Yes": -1.9}]}}]
    }
    *_, logprobs = parse_choice(spec(mode="completion"), json.dumps(legacy).encode())
    assert logprobs == (((" No", -0.2), (" Yes", -1.9)),)


@pytest.mark.parametrize(
    "payload", [b"not json", b"{}", b'{"choices": []}', b'{"choices": [{"message": {}}]}']
)
def test_parse_rejects_non_openai_replies(payload: bytes) -> None:
    with pytest.raises(ResponseFormatError, match="not an OpenAI chat completion"):
        parse_choice(spec(), payload)


def test_null_content_is_a_failure_not_an_empty_answer() -> None:
    payload = b'{"choices": [{"message": {"content": null}}]}'
    with pytest.raises(ResponseFormatError, match="no text"):
        parse_choice(spec(), payload)


def err(status: int, body: object = None, retry_after: str | None = None) -> Exception:
    raw = json.dumps(body).encode() if body is not None else b""
    return error_for_status(spec(api_key_env="K"), "http://h/v1", status, raw, retry_after)


def test_status_translation() -> None:
    e429 = err(429, {"error": {"message": "slow down"}}, "2.5")
    assert isinstance(e429, RateLimitError)
    assert e429.retry_after_s == 2.5
    assert "slow down" in str(e429)
    assert isinstance(err(500), ServerError)
    assert isinstance(err(503), ServerError)
    assert isinstance(err(408), AgentTimeoutError)
    auth = err(401)
    assert isinstance(auth, AuthenticationError)
    assert "environment variable K" in str(auth)
    assert isinstance(err(403), AuthenticationError)
    assert type(err(400, {"error": {"message": "bad temperature"}})) is InvalidRequestError
    ctx = err(400, {"error": {"message": "x", "code": "context_length_exceeded"}})
    assert isinstance(ctx, ContextLengthError)
    vllm = err(400, {"message": "This model's maximum context length is 2048 tokens."})
    assert isinstance(vllm, ContextLengthError)
    for retryable in (429, 500, 502, 503, 408):
        assert is_retryable(err(retryable))
    for fatal in (400, 401, 403, 404, 422):
        assert not is_retryable(err(fatal))


def test_error_names_agent_endpoint_status() -> None:
    text = str(err(500, {"error": {"message": "boom"}}))
    assert "agent 'a'" in text
    assert "http://h/v1" in text
    assert "HTTP 500" in text


def test_echoed_key_is_blanked_even_when_message_is_cut() -> None:
    key = "sk-" + "x" * 40
    body = json.dumps({"error": {"message": "y" * 280 + f" Incorrect API key provided: {key}"}})
    e = error_for_status(spec(), "http://h/v1", 401, body.encode(), None, secret=key)
    assert key[:10] not in str(e)


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
