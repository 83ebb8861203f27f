"""Core value types: messages, prompts, sampling settings, usage and completions.

All are frozen dataclasses: they are passed between concurrent tasks and stored, never edited in
place. Construct new ones with `dataclasses.replace`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

__all__ = [
    "Completion",
    "Message",
    "Prompt",
    "Role",
    "SamplingParams",
    "ScoreFailure",
    "TopLogprobs",
    "Usage",
]

Role = Literal["system", "user", "assistant"]
_ROLES: frozenset[str] = frozenset({"system", "user", "assistant"})


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message: a role ('system', 'user' or 'assistant') and its text."""

    role: Role
    content: str

    def __post_init__(self) -> None:
        if self.role not in _ROLES:
            raise ValueError(f"message role must be one of {sorted(_ROLES)}, got {self.role!r}")
        if not isinstance(self.content, str):
            raise TypeError(f"message content must be a string, got {type(self.content).__name__}")

    def to_dict(self) -> dict[str, str]:
        """The OpenAI wire form: ``{"role": ..., "content": ...}``."""
        return {"role": self.role, "content": self.content}


def user(content: str) -> Message:
    """Shorthand for a user message."""
    return Message("user", content)


@dataclass(frozen=True, slots=True)
class Prompt:
    """One input row: an id, the conversation to answer, and extra fields for rewards.

    `extra` carries row fields such as ``gold_answer`` or ``reference`` through to rewards; it is
    read-only.
    """

    id: str
    messages: tuple[Message, ...]
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if not self.messages:
            raise ValueError(f"prompt {self.id!r} has no messages")
        if not isinstance(self.extra, MappingProxyType):
            object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    @classmethod
    def from_text(cls, id: str, text: str, **extra: Any) -> Prompt:
        """A prompt made of one user message."""
        return cls(id=id, messages=(Message("user", text),), extra=extra)

    @property
    def text(self) -> str:
        """The last user message: what the templates call the question."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return self.messages[-1].content


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Sampling settings sent with every request.

    Attributes:
        temperature: >= 0.
        top_p: in (0, 1].
        max_tokens: completion tokens at most, >= 1.
        stop: stop sequences (always a list on the wire, never a bare string).
        seed: per-request seed for servers that honour it (vLLM, llama.cpp, the fake server).
    """

    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        stop: object = self.stop
        if isinstance(stop, str):  # a bare string is one stop sequence, never its characters
            object.__setattr__(self, "stop", (stop,))
        elif not isinstance(stop, tuple):
            object.__setattr__(self, "stop", tuple(self.stop))

    def to_request_fields(self) -> dict[str, Any]:
        """The fields these settings add to an OpenAI request body."""
        body: dict[str, Any] = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
        }
        if self.stop:
            body["stop"] = list(self.stop)
        if self.seed is not None:
            body["seed"] = self.seed
        return body


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one call. ``None`` means the server did not report that count."""

    prompt_tokens: int | None
    completion_tokens: int | None

    @property
    def missing(self) -> bool:
        """True when the server omitted either count (accounting reports these separately)."""
        return self.prompt_tokens is None or self.completion_tokens is None

    @property
    def total_tokens(self) -> int:
        """Sum of the reported counts (missing counts contribute 0; check `missing`)."""
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)


TopLogprobs = tuple[tuple[tuple[str, float], ...], ...]
"""Per generated token, its most likely alternatives as (token, logprob) pairs, best first."""


@dataclass(frozen=True, slots=True)
class Completion:
    """One successful generation.

    Attributes:
        agent: the agent's configured name.
        text: the generated text.
        usage: token counts as reported by the server.
        finish_reason: 'stop', 'length', ... as reported ('' when absent).
        endpoint: base URL of the replica that answered.
        model: the model id the request named.
        latency_s: wall time of the successful attempt, in seconds.
        attempts: how many attempts the call took (1 = no retry).
        logprobs: top log-probabilities per generated token, when requested and returned.
    """

    agent: str
    text: str
    usage: Usage
    finish_reason: str
    endpoint: str
    model: str
    latency_s: float
    attempts: int = 1
    logprobs: TopLogprobs | None = None


def as_messages(messages: Sequence[Message] | str) -> tuple[Message, ...]:
    """Normalise a string or a sequence of messages to a tuple of messages."""
    if isinstance(messages, str):
        return (Message("user", messages),)
    return tuple(messages)


@dataclass(frozen=True, slots=True)
class ScoreFailure:
    """A reward that could not be computed for one response. Never ranked, never a 0.

    Attributes:
        message: what went wrong, for the run's records.
        error_type: the exception class name, when the failure came from one.
    """

    message: str
    error_type: str = ""


Score = float | ScoreFailure
"""One reward result: a raw score, or the failure that stands in its place."""
