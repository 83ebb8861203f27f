"""`toa serve`'s wire format, as pure functions (no server)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toa.errors import ServeRequestError
from toa.serve.protocol import (
    SearchRequest,
    best_choices,
    completion_body,
    error_body,
    parse_search_request,
    stream_chunks,
)
from toa.types import Message

LIMITS: dict[str, Any] = {
    "default_strategy": "toa",
    "default_budget": 8,
    "max_budget": 16,
    "max_messages": 4,
}


def _result(samples: list[tuple[str, float | None]]) -> dict[str, Any]:
    rows = [{"node": i + 1, "agent": f"a{i}", "response": t, "reward": r}
            for i, (t, r) in enumerate(samples)]  # fmt: skip
    scored = [s for s in rows if s["reward"] is not None]
    best = max(scored, key=lambda s: s["reward"]) if scored else None
    return {
        "id": "req-1",
        "samples": rows,
        "best": best,
        "compute": {"prompt_tokens": 10, "completion_tokens": 5, "reward_calls": len(rows)},
    }


def test_requests_are_read_with_their_defaults_and_toa_settings() -> None:
    body = {
        "model": "toa:ensemble",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}],
            },
        ],
        "n": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
        "toa": {"budget": 3, "return_tree": True},
    }
    request = parse_search_request(body, **LIMITS)
    assert request == SearchRequest(
        model="toa:ensemble",
        strategy="ensemble",
        budget=3,
        messages=(Message("system", "Be brief."), Message("user", "Hi there")),
        n=2,
        stream=True,
        include_usage=True,
        return_tree=True,
    )
    plain = parse_search_request({"model": "toa", "messages": [{"role": "user", "content": "x"}]},
                                 **LIMITS)  # fmt: skip
    assert (plain.strategy, plain.budget, plain.n, plain.stream) == ("toa", 8, 1, False)


@pytest.mark.parametrize(
    ("body", "param", "status"),
    [
        ({"model": "toa:nope", "messages": [{"role": "user", "content": "x"}]}, "model", 404),
        ({"model": "toa", "messages": [{"role": "user", "content": "x"}] * 5}, "messages", 400),
        ({"model": "toa", "messages": [{"role": "assistant", "content": "x"}]},
         "messages[0].role", 400),
        ({"model": "toa", "messages": [{"role": "user", "content": 3}]},
         "messages[0].content", 400),
        ({"model": "toa", "messages": [{"role": "user", "content": "x"}], "toa": {"budget": 0}},
         "toa.budget", 400),
        ({"model": "toa", "messages": [{"role": "user", "content": "x"}], "toa": {"budget": 17}},
         "toa.budget", 400),
        ({"model": "toa", "messages": [{"role": "user", "content": "x"}],
          "toa": {"strategy": "best"}}, "toa.strategy", 400),
        ({"model": "toa", "messages": [{"role": "user", "content": "x"}], "stream": "yes"},
         "stream", 400),
        ({"model": "toa", "messages": [{"role": "user", "content": "x"}], "n": True}, "n", 400),
    ],
)  # fmt: skip
def test_each_bad_field_is_named(body: dict[str, Any], param: str, status: int) -> None:
    with pytest.raises(ServeRequestError) as caught:
        parse_search_request(body, **LIMITS)
    assert (caught.value.param, caught.value.status) == (param, status)
    error = error_body(caught.value)["error"]
    assert error["param"] == param
    assert error["message"] == str(caught.value)


def test_the_n_best_are_distinct_best_first_and_unscored_last() -> None:
    result = _result([("a", 0.2), ("b", 0.9), ("a", 0.95), ("c", None), ("d", 0.5)])
    texts = [c["response"] for c in best_choices(result, 4)]
    assert texts == ["a", "b", "d", "c"]
    assert [c["response"] for c in best_choices(result, 10)] == ["a", "b", "d", "c"]


def _request(n: int = 1, usage: bool = False) -> SearchRequest:
    return SearchRequest("toa", "toa", 4, (Message("user", "x"),), n=n, include_usage=usage)


@given(st.lists(st.text(max_size=200), min_size=1, max_size=5), st.integers(1, 4))
def test_the_stream_carries_exactly_the_completions_answers(texts: list[str], n: int) -> None:
    result = _result([(t, float(i)) for i, t in enumerate(texts)])
    request = _request(n=n, usage=True)
    full = completion_body("id", request, result, None, created=1)
    chunks = stream_chunks("id", request, result, None, created=1)
    streamed: dict[int, str] = {}
    finished = set()
    for chunk in chunks[:-1]:
        for choice in chunk["choices"]:
            streamed[choice["index"]] = streamed.get(choice["index"], "") + choice["delta"].get(
                "content", ""
            )
            if choice["finish_reason"] == "stop":
                finished.add(choice["index"])
    answers = [c["message"]["content"] for c in full["choices"]]
    assert [streamed[i] for i in range(len(answers))] == answers
    assert finished == set(range(len(answers)))
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == full["usage"] == {
        "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
    }  # fmt: skip
    assert chunks[-2]["toa"]["prompt_id"] == "req-1"
