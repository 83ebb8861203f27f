"""Settings for calling a reward server, and the client opened from them on first use.

`EndpointSettings` says where a server is (one base URL or several replicas) and how to call it:
model name, API key variable, timeout, concurrency limit, `RetrySettings` and `BreakerSettings`;
`EndpointSettings.to_spec` turns it into the `toa.agents.AgentSpec` an `AgentClient` runs on.
The configs of rewards that call a server extend it (`toa.rewards.http.HttpRewardConfig`,
`toa.rewards.judge.JudgeAgentConfig`). `LazyClient` holds a given client, or opens one (with its
own `AgentPool`) on first use, so nothing is opened before the first request.
"""

from __future__ import annotations

import asyncio
import os

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from toa.agents.client import AgentClient, AgentPool
from toa.agents.spec import (
    AgentSpec,
    BreakerPolicy,
    RetryPolicy,
    check_base_urls,
    check_key_env_name,
)
from toa.errors import ConfigError

__all__ = ["BreakerSettings", "EndpointSettings", "LazyClient", "RetrySettings"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrySettings(_Model):
    """Retries of transient failures (see `toa.agents.RetryPolicy`); delays in seconds."""

    max_attempts: int = Field(5, ge=1)
    base_delay_s: float = Field(0.5, ge=0)
    max_delay_s: float = Field(30.0, ge=0)
    max_retry_after_s: float = Field(120.0, ge=0)

    def to_policy(self) -> RetryPolicy:
        return RetryPolicy(**self.model_dump())


class BreakerSettings(_Model):
    """Per-endpoint circuit breaker (see `toa.agents.BreakerPolicy`); times in seconds."""

    failure_threshold: int = Field(5, ge=1)
    cooldown_s: float = Field(30.0, ge=0)
    max_cooldown_s: float = Field(300.0, ge=0)

    @model_validator(mode="after")
    def _order(self) -> BreakerSettings:
        if self.max_cooldown_s < self.cooldown_s:
            raise ValueError("max_cooldown_s must be >= cooldown_s")
        return self

    def to_policy(self) -> BreakerPolicy:
        return BreakerPolicy(**self.model_dump())


class EndpointSettings(_Model):
    """Where a server is and how to call it: replicas, key variable, limits, retries, breaker."""

    name: str = Field("reward", min_length=1)
    base_url: str | list[str]
    model: str | None = None
    api_key_env: str | None = None
    timeout_s: float = Field(60.0, gt=0)
    max_concurrency: int = Field(16, ge=1)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)

    @field_validator("base_url")
    @classmethod
    def _urls(cls, value: str | list[str]) -> str | list[str]:
        check_base_urls(value, example="http://127.0.0.1:8000")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _key_env(cls, value: str | None) -> str | None:
        check_key_env_name(value)
        return value

    def to_spec(self) -> AgentSpec:
        """The client settings; ConfigError when `api_key_env` names an unset variable."""
        if self.api_key_env and not os.environ.get(self.api_key_env):
            raise ConfigError(
                f"{self.name!r}: environment variable {self.api_key_env} (api_key_env) is not set"
            )
        urls = (self.base_url,) if isinstance(self.base_url, str) else tuple(self.base_url)
        return AgentSpec(
            name=self.name,
            base_urls=urls,
            model=self.model or "",
            api_key_env=self.api_key_env,
            max_concurrency=self.max_concurrency,
            timeout_s=self.timeout_s,
            retry=self.retry.to_policy(),
            breaker=self.breaker.to_policy(),
        )


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
