"""From one `results.jsonl` line (a dict) to the pieces every export row is made of.

Pure functions, no I/O. A result line is what `toa.engine.results` writes: ``id``, ``messages``
(the conversation), ``status``, ``strategy``, and ``samples``, each with ``node``, ``agent``,
``response``, ``reward`` and, when the call or its reward failed, ``error`` / ``reward_error``.
The candidates come from the prompt's stored search tree (the record); the ``samples`` view of
the line is read only for stores that hold no tree (written by an older TOA release).

A sample is a *candidate* for training data only when its call succeeded, its response is not
blank and it has a finite reward. Candidates are ranked by raw reward, highest first; equal rewards
keep the order of their node ids (the earlier response first), so ranking is deterministic.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from toa.search.tree import SearchTree

__all__ = [
    "Candidate",
    "Column",
    "ColumnKind",
    "Converted",
    "SampleDrop",
    "SkipReason",
    "assistant_message",
    "candidates",
    "prompt_messages",
]

ColumnKind = Literal["messages", "str", "float", "int"]
Column = tuple[str, ColumnKind]
"""A column of an export: its name and kind ('messages': a list of {role, content})."""

SkipReason = Literal[
    "failed_search",  # the prompt's search crashed (status 'failed')
    "bad_result",  # the line has no usable conversation or is not valid JSON
    "no_scored_response",  # no sample has a response and a reward
    "below_min_reward",  # the best response scored below `min_reward`
    "single_response",  # DPO: fewer than two distinct scored responses
    "only_duplicates",  # DPO: two or more scored responses, all duplicates of one text
    "too_few_for_rank",  # DPO: fewer responses than `rejected_rank`, with if_short='skip'
    "no_margin",  # DPO: no response below the best by more than `min_margin` (ties included)
    "same_agent",  # DPO: every response with enough margin is from the chosen's agent
    "length_ratio",  # DPO: every remaining pair is above `max_length_ratio`
]
"""Why a finished prompt gave no row."""

SampleDrop = Literal["failed_call", "empty_response", "unscored", "duplicate"]
"""Why a sample was not a candidate: its call failed, its text is blank, it has no finite
reward (failed or missing), or it duplicates a better candidate."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A scored response: its tree node id, agent, text and raw reward (the reward's own units)."""

    node: int
    agent: str
    response: str
    reward: float


@dataclass(slots=True)
class Converted:
    """What one result line gave: rows, or the reason it gave none, and what was dropped.

    Attributes:
        rows: the export rows (0 or 1 for SFT; 0 to `pairs_per_prompt` for DPO).
        skip: why there is no row; None when there are rows.
        samples_dropped: samples that were not candidates, by `SampleDrop`.
        pairs_dropped: DPO pairs that would have been taken but for a filter, by filter name.
        rank_fallback: DPO: fewer responses than `rejected_rank`, the lowest was taken instead.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    skip: SkipReason | None = None
    samples_dropped: Counter[str] = field(default_factory=Counter)
    pairs_dropped: Counter[str] = field(default_factory=Counter)
    rank_fallback: bool = False


def _reward(value: object) -> float | None:
    """The reward as a finite float, or None (missing, failed, NaN, infinite, not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    reward = float(value)
    return reward if math.isfinite(reward) else None


def _drop_reason(
    error: object, response: object, reward: float | None, reward_error: object
) -> SampleDrop | None:
    if error is not None:
        return "failed_call"
    if not isinstance(response, str) or not response.strip():
        return "empty_response"
    if reward_error is not None or reward is None:
        return "unscored"
    return None


def candidates(
    result: Mapping[str, Any], tree: SearchTree | None = None
) -> tuple[list[Candidate], Counter[str]]:
    """The candidates of a prompt, best first, and the count of samples dropped, by reason.

    Read from the prompt's search tree when it is given (the record the store keeps), else from
    the result line's ``samples`` view (what stores of older TOA releases hold); both give the
    same candidates. Order: raw reward descending, then node id ascending (ties keep the earlier
    response first).
    """
    kept: list[Candidate] = []
    dropped: Counter[str] = Counter()
    if tree is not None:
        for node in tree.responses():
            reward = _reward(node.reward)
            reason = _drop_reason(node.error, node.text, reward, node.reward_error)
            if reason is not None:
                dropped[reason] += 1
                continue
            assert reward is not None  # _drop_reason checked it
            text = node.text or ""
            kept.append(Candidate(node=node.id, agent=node.agent, response=text, reward=reward))
        kept.sort(key=lambda c: (-c.reward, c.node))
        return kept, dropped
    for index, sample in enumerate(result.get("samples") or ()):
        if not isinstance(sample, Mapping):
            dropped["unscored"] += 1
            continue
        reward = _reward(sample.get("reward"))
        reason = _drop_reason(
            sample.get("error"), sample.get("response"), reward, sample.get("reward_error")
        )
        if reason is not None:
            dropped[reason] += 1
            continue
        assert reward is not None  # _drop_reason checked it
        node_id = sample.get("node")
        kept.append(
            Candidate(
                node=node_id if isinstance(node_id, int) else -1 - index,  # unique when missing
                agent=str(sample.get("agent") or ""),
                response=sample["response"],
                reward=reward,
            )
        )
    kept.sort(key=lambda c: (-c.reward, c.node))
    return kept, dropped


def _is_message(item: object) -> bool:
    return (
        isinstance(item, Mapping)
        and item.get("role") in ("system", "user", "assistant")
        and isinstance(item.get("content"), str)
    )


def prompt_messages(
    result: Mapping[str, Any], system_prompt: str | None = None
) -> list[dict[str, str]] | None:
    """The conversation the responses answer, as role/content dicts; None when the line has none.

    Falls back to one user message from ``prompt`` for lines without ``messages``. With
    `system_prompt`, a system message is put first unless the conversation already starts with
    one (the run's own system message is what the responses were generated under).
    """
    raw = result.get("messages")
    if isinstance(raw, Sequence) and raw and all(_is_message(m) for m in raw):
        messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in raw]
    elif isinstance(result.get("prompt"), str) and result["prompt"]:
        messages = [{"role": "user", "content": result["prompt"]}]
    else:
        return None
    if system_prompt is not None and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def assistant_message(candidate: Candidate) -> dict[str, str]:
    """The candidate as an assistant message, its text exactly as generated."""
    return {"role": "assistant", "content": candidate.response}
