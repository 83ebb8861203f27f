"""What a prompt cost: calls, tokens, FLOPs and money, in total and per agent.

`toa.engine.context.PromptContext` counts into a `Compute` per prompt; the runner sums them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["AgentCompute", "Compute"]


@dataclass(slots=True)
class AgentCompute:
    """Calls and tokens of one agent on one prompt."""

    calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "calls": self.calls,
            "failed_calls": self.failed_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


@dataclass(slots=True)
class Compute:
    """What one prompt cost. Replayed calls count too: they were paid for, once, earlier.

    Attributes:
        calls: generation calls (successful or failed).
        failed_calls: generation calls that failed.
        replayed_calls: calls answered from the store on resume (not sent again).
        cached_calls: calls answered from the generation cache (no request sent).
        missing_usage: successful calls whose server reported no token counts.
        prompt_tokens / completion_tokens: reported token counts.
        flops: 2 x parameters x (prompt + completion tokens), for agents with `params_b` set.
        cost_usd: from the agents' configured prices (0 when none are set).
        reward_calls: responses sent to the reward model (one per scored response).
        failed_rewards: responses whose score failed.
        wall_s: wall time of the prompt in this process, in seconds.
        by_agent: per-agent calls and tokens.
    """

    calls: int = 0
    failed_calls: int = 0
    replayed_calls: int = 0
    cached_calls: int = 0
    missing_usage: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    flops: float = 0.0
    cost_usd: float = 0.0
    reward_calls: int = 0
    failed_rewards: int = 0
    wall_s: float = 0.0
    by_agent: dict[str, AgentCompute] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "flops": self.flops,
            "cost_usd": round(self.cost_usd, 6),
            "reward_calls": self.reward_calls,
            "failed_calls": self.failed_calls,
            "failed_rewards": self.failed_rewards,
            "replayed_calls": self.replayed_calls,
            "cached_calls": self.cached_calls,
            "missing_usage": self.missing_usage,
            "wall_s": round(self.wall_s, 3),
            "by_agent": {name: c.to_dict() for name, c in self.by_agent.items()},
        }
