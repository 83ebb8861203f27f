"""The OpenAI chat-completions wire format of `toa serve`: requests in, completions, stream
chunks and error bodies out. Pure functions over JSON data (no I/O), so every rule is testable
without a server.

A request for ``toa`` or ``toa:<strategy>`` is read into a `SearchRequest`: the messages (string
content, or a list of text parts), ``n``, ``stream`` (with ``stream_options.include_usage``),
and TOA's own settings from ``extra_body`` (the OpenAI client sends ``extra_body`` fields as
top-level body fields): ``{"toa": {"strategy": ..., "budget": ..., "return_tree": true}}``.
Anything wrong is a `ServeRequestError` naming the field (``param``), answered as 400.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from toa.errors import ServeRequestError
from toa.search.strategies import STRATEGY_NAMES
from toa.types import Message

__all__ = [
    "MODEL",
    "SearchRequest",
    "best_choices",
    "completion_body",
    "error_body",
    "model_list",
    "parse_search_request",
    "stream_chunks",
    "usage_of",
]

MODEL = "toa"
"""The model name that runs the configured strategy; ``toa:<strategy>`` runs another."""
_ROLES = ("system", "user", "assistant")
_MAX_N = 16
_CHUNK_CHARS = 48  # characters of answer per streamed chunk


@dataclass(frozen=True)
class SearchRequest:
    """A checked request for a search."""

    model: str
    strategy: str
    budget: int
    messages: tuple[Message, ...]
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    return_tree: bool = False


def model_list(agents: Sequence[str], created: int) -> dict[str, Any]:
    """``GET /v1/models``: ``toa``, ``toa:<strategy>`` for each strategy, then the agents."""
    ids = [MODEL, *(f"{MODEL}:{name}" for name in STRATEGY_NAMES), *agents]
    return {
        "object": "list",
        "data": [{"id": i, "object": "model", "created": created, "owned_by": "toa"} for i in ids],
    }


def _text(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not (isinstance(part, Mapping) and part.get("type") == "text"):
                raise ServeRequestError(
                    f"messages[{index}].content: only text parts are supported "
                    "(type 'text'), got "
                    f"{part.get('type') if isinstance(part, Mapping) else type(part).__name__!r}",
                    param=f"messages[{index}].content",
                )
            text = part.get("text")
            if not isinstance(text, str):
                raise ServeRequestError(
                    f"messages[{index}].content: a text part needs a string 'text'",
                    param=f"messages[{index}].content",
                )
            parts.append(text)
        return "".join(parts)
    raise ServeRequestError(
        f"messages[{index}].content must be a string or a list of text parts",
        param=f"messages[{index}].content",
    )


def _messages(raw: Any, max_messages: int) -> tuple[Message, ...]:
    if not isinstance(raw, list) or not raw:
        raise ServeRequestError("'messages' must be a non-empty list", param="messages")
    if len(raw) > max_messages:
        raise ServeRequestError(
            f"'messages' holds {len(raw)} messages; this server takes at most {max_messages}",
            param="messages",
        )
    messages = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise ServeRequestError(f"messages[{i}] must be an object", param=f"messages[{i}]")
        role = item.get("role")
        if role == "developer":  # OpenAI's newer name for the system role
            role = "system"
        if role not in _ROLES:
            raise ServeRequestError(
                f"messages[{i}].role must be one of {', '.join(_ROLES)}, got {role!r}",
                param=f"messages[{i}].role",
            )
        messages.append(Message(role, _text(item.get("content"), i)))
    if messages[-1].role == "assistant":
        raise ServeRequestError(
            "the last message is the assistant's: there is nothing to answer",
            param=f"messages[{len(messages) - 1}].role",
        )
    return tuple(messages)


def _int(body: Mapping[str, Any], key: str, param: str, default: int, lo: int, hi: int) -> int:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ServeRequestError(f"{param!r} must be an integer", param=param)
    if not lo <= value <= hi:
        raise ServeRequestError(
            f"{param!r} must be between {lo} and {hi}, got {value}", param=param
        )
    return value


def parse_search_request(
    body: Any,
    *,
    default_strategy: str,
    default_budget: int,
    max_budget: int,
    max_messages: int,
) -> SearchRequest:
    """Check a chat-completions body whose model is ``toa`` or ``toa:<strategy>``."""
    if not isinstance(body, Mapping):
        raise ServeRequestError("the request body must be a JSON object")
    model = str(body.get("model"))
    strategy = default_strategy
    if model.startswith(f"{MODEL}:"):
        strategy = model.split(":", 1)[1]
        if strategy not in STRATEGY_NAMES:
            raise ServeRequestError(
                f"model {model!r}: no strategy {strategy!r}; the strategies are "
                f"{', '.join(STRATEGY_NAMES)}",
                status=404,
                param="model",
                code="model_not_found",
            )
    options = body.get("toa") or {}
    if not isinstance(options, Mapping):
        raise ServeRequestError("'toa' (extra_body) must be an object", param="toa")
    unknown = sorted(set(options) - {"strategy", "budget", "return_tree"})
    if unknown:
        raise ServeRequestError(
            f"toa: unknown setting(s) {', '.join(unknown)}; known: strategy, budget, return_tree",
            param=f"toa.{unknown[0]}",
        )
    if options.get("strategy") is not None:
        strategy = str(options["strategy"])
        if strategy not in STRATEGY_NAMES:
            raise ServeRequestError(
                f"toa.strategy: unknown strategy {strategy!r}; choose one of "
                f"{', '.join(STRATEGY_NAMES)}",
                param="toa.strategy",
            )
    budget = _int(options, "budget", "toa.budget", min(default_budget, max_budget), 1, max_budget)
    n = _int(body, "n", "n", 1, 1, _MAX_N)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ServeRequestError("'stream' must be true or false", param="stream")
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, Mapping):
        raise ServeRequestError("'stream_options' must be an object", param="stream_options")
    return_tree = options.get("return_tree", False)
    if not isinstance(return_tree, bool):
        raise ServeRequestError("toa.return_tree must be true or false", param="toa.return_tree")
    return SearchRequest(
        model=model,
        strategy=strategy,
        budget=budget,
        messages=_messages(body.get("messages"), max_messages),
        n=n,
        stream=stream,
        include_usage=bool(stream_options.get("include_usage", False)),
        return_tree=return_tree,
    )


def best_choices(result: Mapping[str, Any], n: int) -> list[dict[str, Any]]:
    """The `n` best distinct answers of a result (by reward, best first; fewer when the tree
    holds fewer distinct scored answers): its samples with a response."""
    samples = [s for s in result.get("samples", []) if s.get("response") is not None]
    samples.sort(key=lambda s: (s.get("reward") is not None, s.get("reward") or 0.0), reverse=True)
    best = result.get("best")
    if isinstance(best, Mapping) and best.get("response") is not None:
        samples.insert(0, dict(best))
    chosen: list[dict[str, Any]] = []
    seen: set[str] = set()
    for sample in samples:
        text = str(sample["response"])
        if text in seen:
            continue
        seen.add(text)
        chosen.append(dict(sample))
        if len(chosen) == n:
            break
    return chosen


def usage_of(compute: Mapping[str, Any]) -> dict[str, int]:
    """OpenAI's ``usage``: every internal generation's tokens summed."""
    prompt = int(compute.get("prompt_tokens") or 0)
    completion = int(compute.get("completion_tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _extension(
    result: Mapping[str, Any],
    request: SearchRequest,
    choices: list[dict[str, Any]],
    tree: Mapping[str, Any] | None,
) -> dict[str, Any]:
    compute = dict(result.get("compute") or {})
    best = choices[0] if choices else {}
    extension: dict[str, Any] = {
        "prompt_id": result.get("id"),
        "strategy": request.strategy,
        "budget": request.budget,
        "agent": best.get("agent"),
        "reward": best.get("reward"),
        "choices": [
            {"agent": c.get("agent"), "reward": c.get("reward"), "node": c.get("node")}
            for c in choices
        ],
        "reward_usage": {
            "reward_calls": compute.get("reward_calls", 0),
            "failed_rewards": compute.get("failed_rewards", 0),
        },
        "compute": compute,
    }
    if request.return_tree:
        extension["tree"] = tree
    return extension


def completion_body(
    completion_id: str,
    request: SearchRequest,
    result: Mapping[str, Any],
    tree: Mapping[str, Any] | None,
    created: int | None = None,
) -> dict[str, Any]:
    """A ``chat.completion`` object for a finished search."""
    choices = best_choices(result, request.n)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": request.model,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": str(c["response"])},
                "finish_reason": "stop",
                "logprobs": None,
            }
            for i, c in enumerate(choices)
        ],
        "usage": usage_of(result.get("compute") or {}),
        "toa": _extension(result, request, choices, tree),
    }


def _chunk(
    completion_id: str, request: SearchRequest, created: int, choices: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": request.model,
        "choices": choices,
    }


def stream_chunks(
    completion_id: str,
    request: SearchRequest,
    result: Mapping[str, Any],
    tree: Mapping[str, Any] | None,
    created: int,
) -> list[dict[str, Any]]:
    """The chunks that carry a finished search's answer(s): per choice its text in pieces,
    then its finish reason; the last chunk holds the ``toa`` extension, and with
    ``include_usage`` a final chunk with no choice holds ``usage``."""
    choices = best_choices(result, request.n)
    chunks = []
    for i, choice in enumerate(choices):
        text = str(choice["response"])
        pieces = [text[j : j + _CHUNK_CHARS] for j in range(0, len(text), _CHUNK_CHARS)] or [""]
        for piece in pieces:
            delta = {"index": i, "delta": {"content": piece}, "finish_reason": None}
            chunks.append(_chunk(completion_id, request, created, [delta]))
        done = {"index": i, "delta": {}, "finish_reason": "stop"}
        chunks.append(_chunk(completion_id, request, created, [done]))
    if chunks:
        chunks[-1]["toa"] = _extension(result, request, choices, tree)
    if request.include_usage:
        last = _chunk(completion_id, request, created, [])
        last["usage"] = usage_of(result.get("compute") or {})
        chunks.append(last)
    return chunks


def first_chunk(completion_id: str, request: SearchRequest, created: int) -> dict[str, Any]:
    """The chunk sent as soon as a stream starts: each choice's role (the text comes when the
    search ends)."""
    roles = [
        {"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        for i in range(request.n)
    ]
    return _chunk(completion_id, request, created, roles)


def error_body(error: ServeRequestError) -> dict[str, Any]:
    """OpenAI's error JSON."""
    return {
        "error": {
            "message": str(error),
            "type": error.error_type,
            "param": error.param,
            "code": error.code,
        }
    }
