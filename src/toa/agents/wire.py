"""The OpenAI wire format: request bodies, response parsing, HTTP status -> typed error.

Pure functions (no I/O), so they are cheap to test and cheap to call.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from toa import compact_json
from toa.agents.spec import AgentSpec
from toa.errors import (
    AgentError,
    AgentTimeoutError,
    AuthenticationError,
    ContextLengthError,
    InvalidRequestError,
    RateLimitError,
    ResponseFormatError,
    ServerError,
)
from toa.types import Message, SamplingParams, TopLogprobs, Usage

__all__ = [
    "build_body",
    "endpoint_path",
    "error_for_status",
    "parse_choice",
    "parse_retry_after",
    "render_prompt",
]

_CONTEXT_HINTS = (
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "context window",
    "too many tokens",
    "exceeds the model",
)
_MAX_DETAIL_CHARS = 300


def endpoint_path(spec: AgentSpec) -> str:
    """The path appended to a base URL for this agent's mode."""
    return "/chat/completions" if spec.mode == "chat" else "/completions"


def render_prompt(spec: AgentSpec, messages: Sequence[Message]) -> str:
    """Completion mode: the conversation rendered through the agent's prompt template.

    A single user message is used as it is; a longer conversation becomes "User: ..." /
    "Assistant: ..." lines. A system message fills ``{system}`` when the template has it, else it
    leads the conversation.
    """
    system = "\n".join(m.content for m in messages if m.role == "system")
    turns = [m for m in messages if m.role != "system"]
    has_system_slot = "{system}" in spec.prompt_template
    if len(turns) == 1 and turns[0].role == "user" and (has_system_slot or not system):
        prompt = turns[0].content
    else:
        lines = [] if has_system_slot or not system else [system]
        lines += [f"{m.role.capitalize()}: {m.content}" for m in turns]
        prompt = "\n".join(lines)
    if has_system_slot:
        return spec.prompt_template.format(prompt=prompt, system=system)
    return spec.prompt_template.format(prompt=prompt)


def build_body(
    spec: AgentSpec, messages: Sequence[Message], sampling: SamplingParams | dict[str, Any]
) -> dict[str, Any]:
    """The JSON body of one request, for the agent's mode. `sampling`: the settings, or the
    fields they add (`SamplingParams.to_request_fields`, computed once by the caller)."""
    body: dict[str, Any] = {"model": spec.model}
    if spec.mode == "chat":
        body["messages"] = [m.to_dict() for m in messages]
    else:
        body["prompt"] = render_prompt(spec, messages)
    body.update(sampling if isinstance(sampling, dict) else sampling.to_request_fields())
    body.update(spec.extra_body)
    return body


def parse_choice(spec: AgentSpec, payload: bytes) -> tuple[str, str, Usage, TopLogprobs | None]:
    """(text, finish_reason, usage, top logprobs) from a 2xx body; ResponseFormatError when it is
    not one. Top logprobs are None unless the request asked for them and the server sent them."""
    try:
        data = compact_json.loads(payload)
        choice = data["choices"][0]
        text = choice["message"]["content"] if spec.mode == "chat" else choice["text"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ResponseFormatError(
            f"the server's reply is not an OpenAI {spec.mode} completion ({exc!r}); "
            "check that base_url points at an OpenAI-compatible API root such as .../v1",
            agent=spec.name,
        ) from exc
    if not isinstance(text, str):
        raise ResponseFormatError(
            "the reply holds no text (content is null: tool calls or refusals are not supported)",
            agent=spec.name,
        )
    finish = str(choice.get("finish_reason") or "")
    return text, finish, _parse_usage(data.get("usage")), _parse_logprobs(choice.get("logprobs"))


def _parse_logprobs(raw: object) -> TopLogprobs | None:
    """Per generated token, its top alternatives as (token, logprob) pairs, best first.

    Chat replies carry ``logprobs.content[i].top_logprobs[j] = {token, logprob}``; completion
    replies ``logprobs.top_logprobs[i] = {token: logprob}``. Anything else gives None.
    """
    if not isinstance(raw, Mapping):
        return None
    out: list[tuple[tuple[str, float], ...]] = []
    content = raw.get("content")
    if isinstance(content, list):
        for item in content:
            tops = item.get("top_logprobs") if isinstance(item, Mapping) else None
            pairs = [
                (str(t["token"]), float(t["logprob"]))
                for t in tops or []
                if isinstance(t, Mapping) and isinstance(t.get("logprob"), int | float)
            ]
            out.append(tuple(sorted(pairs, key=lambda p: -p[1])))
        return tuple(out)
    legacy = raw.get("top_logprobs")
    if isinstance(legacy, list):
        for item in legacy:
            if isinstance(item, Mapping):
                pairs = [(str(k), float(v)) for k, v in item.items() if isinstance(v, int | float)]
                out.append(tuple(sorted(pairs, key=lambda p: -p[1])))
        return tuple(out)
    return None


def _parse_usage(raw: object) -> Usage:
    if not isinstance(raw, Mapping):
        return Usage(None, None)
    prompt = raw.get("prompt_tokens")
    completion = raw.get("completion_tokens")
    return Usage(
        prompt if isinstance(prompt, int) else None,
        completion if isinstance(completion, int) else None,
    )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After in seconds: a number of seconds or an HTTP date. None when absent or invalid."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _server_detail(payload: bytes, secret: str | None) -> tuple[str, str]:
    """(message, code) from an error body, shortened; raw text when it is not OpenAI-shaped."""
    text = payload.decode("utf-8", errors="replace")
    if secret:  # blank the key out before anything is cut or parsed
        text = text.replace(secret, "***")
    message, code = text, ""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, Mapping):
        err = data.get("error", data)
        if isinstance(err, Mapping):
            message = str(err.get("message") or err.get("detail") or text)
            code = str(err.get("code") or err.get("type") or "")
        elif isinstance(err, str):
            message = err
    message = " ".join(message.split())
    if len(message) > _MAX_DETAIL_CHARS:
        message = message[:_MAX_DETAIL_CHARS] + "..."
    return message, code


def error_for_status(
    spec: AgentSpec,
    endpoint: str,
    status: int,
    payload: bytes,
    retry_after: str | None,
    *,
    secret: str | None = None,
) -> AgentError:
    """The typed error for a non-2xx answer (the caller decides whether to retry).

    `secret` (the API key) is blanked out of the server's message: some APIs echo the key back.
    """
    detail, code = _server_detail(payload, secret)
    where: dict[str, Any] = {"agent": spec.name, "endpoint": endpoint, "status": status}
    said = f"the server said: {detail!r}" if detail else "no details given"
    if status == 429:
        seconds = parse_retry_after(retry_after)
        return RateLimitError(f"rate limited; {said}", retry_after_s=seconds, **where)
    if status >= 500:
        return ServerError(f"server error; {said}", **where)
    if status in (401, 403):
        hint = (
            f"check the key in environment variable {spec.api_key_env}"
            if spec.api_key_env
            else "this endpoint needs a key: set api_key_env to the variable that holds it"
        )
        return AuthenticationError(f"not authorised ({said}); {hint}", **where)
    if status == 408:
        return AgentTimeoutError(f"the server timed out the request; {said}", **where)
    lowered = f"{code} {detail}".lower()
    if status in (400, 413) and any(hint in lowered for hint in _CONTEXT_HINTS):
        return ContextLengthError(
            f"prompt too long for the model's context; {said}; shorten the prompt or lower "
            "max_tokens",
            **where,
        )
    return InvalidRequestError(
        f"request rejected; {said}; check the model id ({spec.model!r}) and sampling settings",
        **where,
    )
