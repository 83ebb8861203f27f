"""Agent settings for running local models: one `AgentSpec` per server.

llama-cpp-python's server answers one request at a time per model (a lock around the model), so
each agent gets ``max_concurrency=1``: further requests wait in TOA's client, where the wait does
not count against the request timeout, instead of queueing inside the server where it would.
Timeouts are generous because two CPU cores decode 15-90 tokens/s and several models share them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from toa.agents.spec import AgentSpec, BreakerPolicy, RetryPolicy
from toa.errors import ConfigError
from toa.local.registry import get_model
from toa.local.state import ServerInfo
from toa.types import SamplingParams

__all__ = ["LOCAL_BREAKER", "LOCAL_RETRY", "LOCAL_TIMEOUT_S", "agent_specs"]

LOCAL_TIMEOUT_S = 300.0
"""Seconds allowed for one request. Measured on 2 cores: Qwen 0.5B decodes 20-45 tok/s and reads
a 1,100-token prompt in ~20 s; 512 tokens at a loaded 5 tok/s (~100 s) plus a long prompt
(~30 s) fits twice over. A hung server is still noticed within minutes."""

LOCAL_RETRY = RetryPolicy(max_attempts=3, base_delay_s=1.0, max_delay_s=10.0)
"""Few retries: a loopback server that fails usually fails again (see its log)."""

LOCAL_BREAKER = BreakerPolicy(failure_threshold=3, cooldown_s=10.0, max_cooldown_s=60.0)
"""A local server comes back quickly (a restart takes seconds), so short cool-downs."""


def agent_specs(
    servers: Mapping[str, ServerInfo] | Iterable[ServerInfo],
    *,
    sampling: SamplingParams | None = None,
    timeout_s: float = LOCAL_TIMEOUT_S,
    max_concurrency: int = 1,
) -> list[AgentSpec]:
    """One AgentSpec per server, in the given order.

    Chat models use the GGUF's chat template through ``/v1/chat/completions``. Completion models
    (the Gemma base model) render the conversation through the entry's few-shot template and
    always send its stop sequences (they go in ``extra_body``, so a caller's own sampling
    settings cannot drop them).

    Args:
        servers: running servers, e.g. the result of `start_servers`.
        sampling: default sampling (None: temperature 0.7, max_tokens 256; the entry's stops).
        timeout_s: seconds allowed per request.
        max_concurrency: requests in flight per agent (llama.cpp serves one at a time).
    """
    infos = list(servers.values()) if isinstance(servers, Mapping) else list(servers)
    return [_spec(info, sampling, timeout_s, max_concurrency) for info in infos]


def _spec(
    info: ServerInfo, sampling: SamplingParams | None, timeout_s: float, max_concurrency: int
) -> AgentSpec:
    entry = info.entry
    if entry is None:
        try:
            entry = get_model(info.name)
        except ConfigError:
            raise ConfigError(
                f"server {info.name!r} has no model entry; pass the ServerInfo from start_servers"
            ) from None
    base = sampling or SamplingParams(temperature=0.7, max_tokens=256)
    stop = tuple(dict.fromkeys(base.stop + entry.stop))
    extra = {"stop": list(stop)} if entry.mode == "completion" and entry.stop else {}
    return AgentSpec(
        name=entry.name,
        base_urls=(info.base_url,),
        model=entry.model_id or entry.name,
        mode=entry.mode,
        max_concurrency=max_concurrency,
        timeout_s=timeout_s,
        connect_timeout_s=10.0,
        sampling=SamplingParams(
            temperature=base.temperature,
            top_p=base.top_p,
            max_tokens=base.max_tokens,
            stop=stop if entry.mode == "completion" else base.stop,
            seed=base.seed,
        ),
        prompt_template=entry.prompt_template,
        params_b=entry.params_b,
        extra_body=MappingProxyType(extra),
        retry=LOCAL_RETRY,
        breaker=LOCAL_BREAKER,
    )
