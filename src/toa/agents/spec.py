"""Plain runtime settings of an agent: endpoints, limits, retries, circuit breaker.

These are what the client runs on. The YAML/pydantic layer (`toa.config`) validates user input
and builds them; tests and library users can build them directly.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from toa.types import SamplingParams

__all__ = [
    "AgentMode",
    "AgentSpec",
    "BreakerPolicy",
    "RetryPolicy",
    "check_base_urls",
    "check_key_env_name",
]

AgentMode = Literal["chat", "completion"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and jitter, for retryable failures only.

    Attributes:
        max_attempts: attempts in all, the first included (>= 1).
        base_delay_s: backoff before the first retry; doubles on each further retry.
        max_delay_s: cap on the backoff.
        max_retry_after_s: cap on how long a server's Retry-After is honoured.
    """

    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_delay_s < 0 or self.max_delay_s < 0 or self.max_retry_after_s < 0:
            raise ValueError("retry delays must be >= 0")

    def backoff_s(self, retry: int, rng: random.Random) -> float:
        """Delay before retry number `retry` (1 = first retry): 'equal jitter' in [d/2, d]."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0 ** (retry - 1))
        return rng.uniform(ceiling / 2.0, ceiling)

    def delay_s(self, retry: int, rng: random.Random, retry_after_s: float | None) -> float:
        """The backoff, or the server's Retry-After (capped) when that is longer."""
        delay = self.backoff_s(retry, rng)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.max_retry_after_s))
        return delay


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """Per-endpoint circuit breaker.

    Attributes:
        failure_threshold: consecutive failures (connection, timeout, 5xx, malformed reply) that
            take the endpoint out (>= 1).
        cooldown_s: how long it stays out before one probe request is let through.
        max_cooldown_s: each failed probe doubles the cool-down, up to this.
    """

    failure_threshold: int = 5
    cooldown_s: float = 30.0
    max_cooldown_s: float = 300.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {self.failure_threshold}")
        if self.cooldown_s < 0 or self.max_cooldown_s < self.cooldown_s:
            raise ValueError("need 0 <= cooldown_s <= max_cooldown_s")


def _empty_mapping() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """One agent: a model behind one or more OpenAI-compatible endpoints (replicas).

    Attributes:
        name: unique name, used in outputs and errors.
        base_urls: replica base URLs, each ending in the API root (e.g. ``http://host:8000/v1``).
        model: the model id the server expects in requests.
        mode: 'chat' (``/chat/completions``) or 'completion' (``/completions``, for base models;
            the conversation is rendered through `prompt_template`).
        api_key_env: name of the environment variable holding the API key (never the key).
        max_concurrency: requests in flight at once for this agent, over all replicas (>= 1).
        requests_per_minute: optional cap on the request rate (retries included), > 0.
        timeout_s: total time allowed for one attempt, in seconds.
        connect_timeout_s: time allowed to open a connection, in seconds.
        sampling: default sampling settings.
        prompt_template: completion mode only: a str.format template with ``{prompt}`` (the
            rendered conversation) and optionally ``{system}``.
        params_b: parameters in billions, for FLOPs accounting (None = unknown).
        extra_body: extra JSON fields sent with every request (e.g. vLLM's ``top_k``).
        retry: retry policy.
        breaker: circuit-breaker policy.
    """

    name: str
    base_urls: tuple[str, ...]
    model: str
    mode: AgentMode = "chat"
    api_key_env: str | None = None
    max_concurrency: int = 64
    requests_per_minute: float | None = None
    timeout_s: float = 120.0
    connect_timeout_s: float = 10.0
    sampling: SamplingParams = field(default_factory=SamplingParams)
    prompt_template: str = "{prompt}"
    params_b: float | None = None
    extra_body: Mapping[str, Any] = field(default_factory=_empty_mapping)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)

    def __post_init__(self) -> None:
        urls: object = self.base_urls
        if isinstance(urls, str):
            object.__setattr__(self, "base_urls", (urls,))
        object.__setattr__(self, "base_urls", tuple(u.rstrip("/") for u in self.base_urls))
        if not self.name:
            raise ValueError("agent name must not be empty")
        if not self.base_urls:
            raise ValueError(f"agent {self.name!r} needs at least one base URL")
        if self.mode not in ("chat", "completion"):
            raise ValueError(f"agent {self.name!r}: mode must be 'chat' or 'completion'")
        if self.max_concurrency < 1:
            raise ValueError(f"agent {self.name!r}: max_concurrency must be >= 1")
        if self.requests_per_minute is not None and self.requests_per_minute <= 0:
            raise ValueError(f"agent {self.name!r}: requests_per_minute must be > 0")
        if self.timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError(f"agent {self.name!r}: timeouts must be > 0")
        if "{prompt}" not in self.prompt_template:
            raise ValueError(f"agent {self.name!r}: prompt_template must contain {{prompt}}")
        if not isinstance(self.extra_body, MappingProxyType):
            object.__setattr__(self, "extra_body", MappingProxyType(dict(self.extra_body)))


def check_base_urls(value: str | list[str], *, example: str = "http://127.0.0.1:8000/v1") -> None:
    """Raise ValueError unless `value` is one http(s) URL or a non-empty list of them."""
    urls = [value] if isinstance(value, str) else value
    if not urls:
        raise ValueError("give at least one URL")
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http(s) URL such as {example}")


def check_key_env_name(value: str | None) -> None:
    """Raise ValueError when an `api_key_env` value looks like a key rather than a variable name."""
    if value is not None and (value.startswith(("sk-", "Bearer")) or len(value) > 64):
        raise ValueError(
            "looks like a key: give the NAME of the environment variable that holds it"
        )
