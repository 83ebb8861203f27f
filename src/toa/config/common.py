"""Models shared by the sections of the configuration: the strict base, retries, circuit breaker.

`RetryConfig` and `BreakerConfig` are the YAML form of `toa.agents.RetryPolicy` and
`toa.agents.BreakerPolicy`, for agents (`toa.config.schema.AgentConfig`) and for the rewards that
call a server (`toa.config.rewards.HttpRewardConfig`, `toa.config.rewards.JudgeAgentConfig`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from toa.agents.spec import BreakerPolicy, RetryPolicy

__all__ = ["BreakerConfig", "RetryConfig", "StrictModel"]


class StrictModel(BaseModel):
    """A configuration section: unknown fields are errors, values are frozen once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryConfig(StrictModel):
    """Retries of transient failures (connection, timeout, 429, 5xx)."""

    max_attempts: int = Field(5, ge=1)
    base_delay_s: float = Field(0.5, ge=0)
    max_delay_s: float = Field(30.0, ge=0)
    max_retry_after_s: float = Field(120.0, ge=0)

    def to_policy(self) -> RetryPolicy:
        """The runtime policy (`toa.agents.RetryPolicy`)."""
        return RetryPolicy(
            max_attempts=self.max_attempts,
            base_delay_s=self.base_delay_s,
            max_delay_s=self.max_delay_s,
            max_retry_after_s=self.max_retry_after_s,
        )


class BreakerConfig(StrictModel):
    """Per-endpoint circuit breaker."""

    failure_threshold: int = Field(5, ge=1)
    cooldown_s: float = Field(30.0, ge=0)
    max_cooldown_s: float = Field(300.0, ge=0)

    @model_validator(mode="after")
    def _order(self) -> BreakerConfig:
        if self.max_cooldown_s < self.cooldown_s:
            raise ValueError(
                f"max_cooldown_s ({self.max_cooldown_s:g}) must be >= cooldown_s "
                f"({self.cooldown_s:g}): the cooldown doubles up to max_cooldown_s"
            )
        return self

    def to_policy(self) -> BreakerPolicy:
        """The runtime policy (`toa.agents.BreakerPolicy`)."""
        return BreakerPolicy(
            failure_threshold=self.failure_threshold,
            cooldown_s=self.cooldown_s,
            max_cooldown_s=self.max_cooldown_s,
        )
