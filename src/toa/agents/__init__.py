"""Agents: OpenAI-compatible clients with replicas, limits, retries and circuit breakers."""

from __future__ import annotations

from toa.agents.breaker import BreakerState, CircuitBreaker, RateLimiter
from toa.agents.client import AgentClient, AgentPool, AgentStats, Endpoint
from toa.agents.spec import AgentMode, AgentSpec, BreakerPolicy, RetryPolicy

__all__ = [
    "AgentClient",
    "AgentMode",
    "AgentPool",
    "AgentSpec",
    "AgentStats",
    "BreakerPolicy",
    "BreakerState",
    "CircuitBreaker",
    "Endpoint",
    "RateLimiter",
    "RetryPolicy",
]
