"""SFT rows: per prompt, the best response by raw reward, in TRL's conversational form.

Two layouts, both of which TRL's `SFTTrainer` reads as conversational data:

- ``messages``: ``{"messages": [...prompt messages, {"role": "assistant", ...}]}``;
- ``prompt_completion``: ``{"prompt": [...prompt messages], "completion": [{"role":
  "assistant", ...}]}`` (the loss is then on the completion only, TRL's default).

Beside them, provenance columns that TRL ignores: ``id`` (the prompt id, unique per export),
``strategy``, ``agent``, ``reward``, ``node`` and ``n_candidates``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from toa.errors import ExportError
from toa.export.checks import check_finite
from toa.export.records import (
    Column,
    Converted,
    assistant_message,
    candidates,
    prompt_messages,
)

if TYPE_CHECKING:
    from toa.search.tree import SearchTree

__all__ = ["SFTLayout", "SFTOptions", "sft_columns", "to_sft_rows"]

SFTLayout = Literal["messages", "prompt_completion"]

_PROVENANCE: tuple[Column, ...] = (
    ("id", "str"),
    ("strategy", "str"),
    ("agent", "str"),
    ("reward", "float"),
    ("node", "int"),
    ("n_candidates", "int"),
)


@dataclass(frozen=True, kw_only=True, slots=True)
class SFTOptions:
    """How SFT rows are made.

    Attributes:
        layout: 'messages' (one conversation) or 'prompt_completion' (two message lists).
        system_prompt: a system message put first when the conversation has none; None: none.
        min_reward: leave out prompts whose best raw reward is below this (inclusive bound, in
            the reward's own units); None: no bound.
    """

    layout: SFTLayout = "messages"
    system_prompt: str | None = None
    min_reward: float | None = None

    def __post_init__(self) -> None:
        if self.layout not in ("messages", "prompt_completion"):
            raise ExportError(f"SFT layout must be messages or prompt_completion: {self.layout!r}")
        check_finite("min_reward", self.min_reward)


def sft_columns(options: SFTOptions) -> tuple[Column, ...]:
    """The columns of an SFT export, in order."""
    if options.layout == "messages":
        return (("messages", "messages"), *_PROVENANCE)
    return (("prompt", "messages"), ("completion", "messages"), *_PROVENANCE)


def to_sft_rows(
    result: Mapping[str, Any],
    options: SFTOptions,
    tree: SearchTree | None = None,
) -> Converted:
    """The SFT row of one result line (at most one), or the reason there is none.

    The best candidate is the highest raw reward; on a tie, the lowest node id. Only results with
    status 'done' give rows.
    """
    if result.get("status") != "done":
        return Converted(skip="failed_search")
    messages = prompt_messages(result, options.system_prompt)
    ranked, dropped = candidates(result, tree)
    if messages is None:
        return Converted(skip="bad_result", samples_dropped=dropped)
    if not ranked:
        return Converted(skip="no_scored_response", samples_dropped=dropped)
    best = ranked[0]
    if options.min_reward is not None and best.reward < options.min_reward:
        return Converted(skip="below_min_reward", samples_dropped=dropped)
    answer = [assistant_message(best)]
    row: dict[str, Any] = (
        {"messages": messages + answer}
        if options.layout == "messages"
        else {"prompt": messages, "completion": answer}
    )
    row.update(
        id=str(result.get("id")),
        strategy=str(result.get("strategy") or ""),
        agent=best.agent,
        reward=best.reward,
        node=best.node,
        n_candidates=len(ranked),
    )
    return Converted(rows=[row], samples_dropped=dropped)
