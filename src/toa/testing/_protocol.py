"""The OpenAI wire shapes the fake server speaks: request validation, completions and errors.

`toa.testing.server` documents the endpoints and what a valid request is; this module holds the
parsing and the response bodies, so the server itself only routes, accounts and waits.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

from toa.testing.world import qualities_in

KINDS: Final = ("fresh", "refine", "aggregate")
"""Request kinds, by their number of quality markers: none, one, two or more."""


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
    kind: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", KINDS[min(2, len(qualities_in(self.text)))])


def json_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object; raises `Rejected` (400) otherwise."""
    try:
        body = json.loads(raw)
    except ValueError:  # includes UnicodeDecodeError
        raise Rejected(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise Rejected(400, "the request body must be a JSON object")
    return body


def parse_call(body: dict[str, Any], *, seq: int, chat: bool, agents: Collection[str]) -> Call:
    """The generation request in `body`; raises `Rejected` (400, or 404 for an unknown agent)."""
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
    return Call(seq, chat, model, text, max_tokens, seed)


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
    choice: dict[str, Any]
    if call.chat:
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "logprobs": None}
    else:
        choice = {"index": 0, "text": text, "logprobs": None}
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
