"""The OpenAI wire shapes the fake server speaks: request validation, completions and errors.

`toa.testing.server` documents the endpoints and what a valid request is; this module holds the
parsing and the response bodies, so the server itself only routes, accounts and waits.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

from toa.testing.world import Verdict, qualities_in

KINDS: Final = ("fresh", "refine", "aggregate")
"""Request kinds, by their number of quality markers: none, one, two or more."""
JUDGE_KIND: Final = "judge"
"""The kind of every request to a judge agent, whatever its markers."""
MAX_TOP_LOGPROBS: Final = 20
_LOGPROB_FLOOR: Final = 1e-6  # P(yes) and P(no) are clamped to [1e-6, 1 - 1e-6] before the log
_TOKEN_RE: Final = re.compile(r"\s*\w+|\s*[^\w\s]")


class Rejected(Exception):
    """A request the server refuses before it reaches an agent (HTTP 400 or 404)."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True, slots=True)
class Call:
    """A valid generation request, as the server uses it."""

    seq: int
    chat: bool
    agent: str
    text: str
    max_tokens: int | None
    seed: int | None
    judge: bool = False
    top_logprobs: int | None = None  # judge requests: alternatives asked per token; None: none
    kind: str = field(init=False)

    def __post_init__(self) -> None:
        kind = JUDGE_KIND if self.judge else KINDS[min(2, len(qualities_in(self.text)))]
        object.__setattr__(self, "kind", kind)


def json_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object; raises `Rejected` (400) otherwise."""
    try:
        body = json.loads(raw)
    except ValueError:  # includes UnicodeDecodeError
        raise Rejected(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise Rejected(400, "the request body must be a JSON object")
    return body


def parse_call(
    body: dict[str, Any],
    *,
    seq: int,
    chat: bool,
    agents: Collection[str],
    judges: Collection[str] = frozenset(),
) -> Call:
    """The generation request in `body`; raises `Rejected` (400, or 404 for an unknown agent).

    For a judge agent the log-probability request is read too (`judge_logprobs_asked`).
    """
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise Rejected(400, "'model' is required and must be a non-empty string", param="model")
    text = _chat_text(body.get("messages")) if chat else _prompt_text(body.get("prompt"))
    _check_options(body)
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    if max_tokens is not None and (not _is_int(max_tokens) or max_tokens < 1):
        raise Rejected(400, "'max_tokens' must be an integer >= 1", param="max_tokens")
    seed = body.get("seed")
    if seed is not None and not _is_int(seed):
        raise Rejected(400, "'seed' must be an integer", param="seed")
    if model not in agents:
        raise Rejected(
            404, f"The model `{model}` does not exist.", param="model", code="model_not_found"
        )
    if model in judges:
        top = judge_logprobs_asked(body, chat=chat)
        return Call(seq, chat, model, text, max_tokens, seed, judge=True, top_logprobs=top)
    return Call(seq, chat, model, text, max_tokens, seed)


def judge_logprobs_asked(body: dict[str, Any], *, chat: bool) -> int | None:
    """How many top alternatives per token a judge request asks for; None when it asks none.

    Chat: ``"logprobs": true`` with ``"top_logprobs"``: an integer in 0..20 (absent: 0).
    Completions: ``"logprobs"``: an integer in 0..20 (a bool is refused). Otherwise HTTP 400.
    """
    asked = body.get("logprobs")
    if chat:
        if asked is None or asked is False:
            return None
        if asked is not True:
            raise Rejected(400, "'logprobs' must be a boolean", param="logprobs")
        asked = body.get("top_logprobs", 0)
        param = "top_logprobs"
    else:
        if asked is None:
            return None
        param = "logprobs"
    if not _is_int(asked) or not 0 <= asked <= MAX_TOP_LOGPROBS:
        raise Rejected(400, f"'{param}' must be an integer in 0..{MAX_TOP_LOGPROBS}", param=param)
    return int(asked)


def _check_options(body: dict[str, Any]) -> None:
    if body.get("stream"):
        raise Rejected(400, "stream is not supported by the fake server", param="stream")
    if body.get("n", 1) not in (None, 1):
        raise Rejected(400, "the fake server answers with exactly one choice (n=1)", param="n")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _chat_text(messages: object) -> str:
    if not isinstance(messages, list) or not messages:
        raise Rejected(400, "'messages' must be a non-empty list", param="messages")
    contents = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise Rejected(
                400, "every message must be an object with a string 'content'", param="messages"
            )
        contents.append(content)
    return "\n".join(contents)


def _prompt_text(prompt: object) -> str:
    if not isinstance(prompt, str):
        raise Rejected(400, "'prompt' is required and must be a string", param="prompt")
    return prompt


def fit(text: str, max_tokens: int | None) -> tuple[str, str]:
    """The answer cut to `max_tokens` words, keeping its final quality marker; finish_reason."""
    words = text.split()
    if max_tokens is None or len(words) <= max_tokens:
        return text, "stop"
    return " ".join([*words[: max_tokens - 1], words[-1]]), "length"


def completion_body(call: Call, answer: str, *, omit_usage: bool) -> dict[str, Any]:
    """The ``chat.completion`` / ``text_completion`` body that answers `call` with `answer`."""
    text, finish_reason = fit(answer, call.max_tokens)
    return _envelope(call, text, finish_reason, None, omit_usage=omit_usage)


def judge_body(
    call: Call, verdict: Verdict, *, omit_usage: bool, omit_logprobs: bool = False
) -> dict[str, Any]:
    """The body that answers a judge request with `verdict`: its text cut to ``max_tokens``
    tokens (finish_reason ``"length"`` then), with log-probabilities when the request asked
    (and `omit_logprobs` is False: some servers ignore the request).

    Tokens are words and punctuation marks, each with its leading whitespace ("Score", ":",
    " 7"). Each token's log-probability is 0 and its only alternative itself, except the first
    token of a yes/no verdict: its alternatives are "Yes" with log(q) and "No" with log(1 - q)
    (q clamped to [1e-6, 1 - 1e-6]), best first; ``top_logprobs`` cuts every list.
    """
    tokens = _TOKEN_RE.findall(verdict.text)
    finish_reason = "stop"
    if call.max_tokens is not None and len(tokens) > call.max_tokens:
        tokens, finish_reason = tokens[: call.max_tokens], "length"
    logprobs = None
    if call.top_logprobs is not None and not omit_logprobs:
        tops = [[(t, 0.0)] for t in tokens]
        if verdict.mode == "yes_no" and verdict.quality is not None:
            q = min(1.0 - _LOGPROB_FLOOR, max(_LOGPROB_FLOOR, verdict.quality))
            pairs = [("Yes", math.log(q)), ("No", math.log(1.0 - q))]
            tops[0] = sorted(pairs, key=lambda p: -p[1])
        chosen = [next(lp for a, lp in top if a == t) for t, top in zip(tokens, tops, strict=True)]
        tops = [top[: call.top_logprobs] for top in tops]
        shape = _chat_logprobs if call.chat else _legacy_logprobs
        logprobs = shape(tokens, chosen, tops)
    return _envelope(call, "".join(tokens), finish_reason, logprobs, omit_usage=omit_usage)


def _chat_logprobs(
    tokens: list[str], chosen: list[float], tops: list[list[tuple[str, float]]]
) -> dict[str, Any]:
    """OpenAI chat shape: ``{"content": [{token, logprob, bytes, top_logprobs: [...]}], ...}``."""

    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    content = [
        {**entry(t, lp), "top_logprobs": [entry(a, alp) for a, alp in top]}
        for t, lp, top in zip(tokens, chosen, tops, strict=True)
    ]
    return {"content": content, "refusal": None}


def _legacy_logprobs(
    tokens: list[str], chosen: list[float], tops: list[list[tuple[str, float]]]
) -> dict[str, Any]:
    """OpenAI completions shape: tokens, token_logprobs, top_logprobs (dicts), text_offset."""
    offsets = [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    return {
        "tokens": tokens,
        "token_logprobs": chosen,
        "top_logprobs": [dict(top) for top in tops],
        "text_offset": offsets,
    }


def _envelope(
    call: Call,
    text: str,
    finish_reason: str,
    logprobs: dict[str, Any] | None,
    *,
    omit_usage: bool,
) -> dict[str, Any]:
    choice: dict[str, Any]
    if call.chat:
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "logprobs": logprobs}
    else:
        choice = {"index": 0, "text": text, "logprobs": logprobs}
    choice["finish_reason"] = finish_reason
    payload: dict[str, Any] = {
        "id": f"{'chatcmpl' if call.chat else 'cmpl'}-fake{call.seq:010d}",
        "object": "chat.completion" if call.chat else "text_completion",
        "created": int(time.time()),
        "model": call.agent,
        "choices": [choice],
    }
    if not omit_usage:
        prompt_tokens, completion_tokens = len(call.text.split()), len(text.split())
        payload["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
    return payload


def models_body(agents: Collection[str]) -> dict[str, Any]:
    """The ``GET /v1/models`` body: `agents`, in OpenAI's list shape."""
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "toa-fake-server"}
            for name in agents
        ],
    }


def error_response(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """An error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""
    error = {"message": message, "type": type_, "param": param, "code": code}
    return web.json_response({"error": error}, status=status, headers=headers)


def rejection_response(rejected: Rejected) -> web.Response:
    """The error response for a refused request."""
    return error_response(
        rejected.status, rejected.message, param=rejected.param, code=rejected.code
    )
