"""The client of a reward that calls a server, opened on first use.

The rewards that call a server (`toa.rewards.http.HttpRewardModel`, `toa.rewards.judge.JudgeReward`)
run on a `toa.agents.AgentSpec`: where the server is (one base URL or several replicas), model name,
API key variable, timeout, concurrency limit, `RetryPolicy` and `BreakerPolicy`. Their YAML
settings, and the conversion to that spec, are in `toa.config.rewards`. `LazyClient` holds a given
client, or opens one (with its own `AgentPool`) on first use, so nothing is opened before the first
request.
"""

from __future__ import annotations

import asyncio

from toa.agents.client import AgentClient, AgentPool
from toa.agents.spec import AgentSpec

__all__ = ["LazyClient"]


class LazyClient:
    """An `AgentClient` given, or one opened (with its own pool) on first use from a spec."""

    def __init__(self, source: AgentSpec | AgentClient) -> None:
        self.spec = source if isinstance(source, AgentSpec) else source.spec
        self._client = source if isinstance(source, AgentClient) else None
        self._pool: AgentPool | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> AgentClient:
        """The client; opens the owned pool first when needed (ConfigError: missing API key)."""
        async with self._lock:
            if self._client is None:
                pool = AgentPool([self.spec])
                await pool.open()
                self._pool, self._client = pool, pool[self.spec.name]
            return self._client

    async def aclose(self) -> None:
        """Close the owned pool (idempotent); a client that was given is left open."""
        pool, self._pool = self._pool, None
        if pool is not None:
            self._client = None
            await pool.close()
