"""One `results.jsonl` line per finished prompt: every sample, the best one, and the compute.

Failed generations and failed rewards are listed with their error; they never get a reward.
"""

from __future__ import annotations

from typing import Any

from toa.engine.context import Compute
from toa.search.tree import Node, SearchTree
from toa.types import Prompt

__all__ = ["failed_result", "tree_result"]


def _sample(node: Node) -> dict[str, Any]:
    sample: dict[str, Any] = {
        "node": node.id,
        "parent": node.parents[0] if node.parents else None,
        "parents": list(node.parents),
        "depth": node.depth,
        "agent": node.agent,
        "action": node.action,
        "response": node.text,
        "reward": node.reward,
        "usage": (
            {
                "prompt_tokens": node.usage.prompt_tokens,
                "completion_tokens": node.usage.completion_tokens,
            }
            if node.usage is not None
            else None
        ),
    }
    if node.error is not None:
        sample["error"] = node.error
    if node.reward_error is not None:
        sample["reward_error"] = node.reward_error
    return sample


def _prompt_fields(prompt: Prompt) -> dict[str, Any]:
    return {
        "id": prompt.id,
        "prompt": prompt.text,
        "messages": [m.to_dict() for m in prompt.messages],
        "extra": dict(prompt.extra),
    }


def tree_result(prompt: Prompt, tree: SearchTree, compute: Compute) -> dict[str, Any]:
    """The result line of a prompt whose search finished (its best may be None: all failed)."""
    best = tree.best()
    return {
        **_prompt_fields(prompt),
        "status": "done",
        "strategy": tree.strategy,
        "budget": tree.budget,
        "samples": [_sample(n) for n in tree.responses()],
        "best": (
            {"node": best.id, "agent": best.agent, "response": best.text, "reward": best.reward}
            if best is not None
            else None
        ),
        "compute": compute.to_dict(),
    }


def failed_result(
    prompt: Prompt, strategy: str, error: BaseException, compute: Compute
) -> dict[str, Any]:
    """The result line of a prompt whose search itself crashed (a bug or a store failure)."""
    return {
        **_prompt_fields(prompt),
        "status": "failed",
        "strategy": strategy,
        "error": f"{type(error).__name__}: {error}",
        "samples": [],
        "best": None,
        "compute": compute.to_dict(),
    }
