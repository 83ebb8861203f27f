"""DPO pairs: per prompt, the best response against lower-ranked ones, in TRL's conversational form.

Each row is ``{"prompt": [...messages], "chosen": [{"role": "assistant", ...}], "rejected":
[{"role": "assistant", ...}]}``, which TRL's `DPOTrainer` reads as a conversational preference
dataset, plus provenance columns that TRL ignores: ``id`` (the prompt id), ``pair_id``
(``"{id}/{chosen_node}-{rejected_node}"``, unique per export), ``strategy``, ``chosen_agent``,
``chosen_reward``, ``chosen_node``, ``rejected_agent``, ``rejected_reward``, ``rejected_node``,
``rejected_rank`` and ``n_candidates``.

How the rejected response is found (ranks are 1-based, among the prompt's distinct candidates,
best first; see `toa.export.records` for what a candidate is):

1. The candidates in search order: with ``rejected_rank=K``, rank K, then K+1, K+2, ... (ever
   worse); with ``rejected_rank=None``, the lowest, then the second lowest, ... (ever better).
   With fewer than K candidates, ``if_short='lowest'`` searches as for the lowest (and the report
   counts the fallback); ``if_short='skip'`` leaves the prompt out.
2. A candidate qualifies when ``chosen_reward > rejected_reward + min_margin`` (so ties never pair)
   and its text differs from the chosen's; with ``different_agents``, when its agent differs too.
3. With ``max_length_ratio``, a qualifying pair whose chosen/rejected length ratio is above it is
   dropped and counted, and the search goes on.
4. The first ``pairs_per_prompt`` qualifying candidates each give a pair with the best response
   (the chosen is always the best; each rejected response is used once).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from toa.errors import ExportError
from toa.export.checks import check_finite
from toa.export.filters import Dedupe, dedupe, dedupe_key, length_ratio
from toa.export.records import (
    Candidate,
    Column,
    Converted,
    SkipReason,
    assistant_message,
    candidates,
    prompt_messages,
)

if TYPE_CHECKING:
    from toa.search.tree import SearchTree

__all__ = ["DPOOptions", "IfShort", "dpo_columns", "to_dpo_pairs"]

IfShort = Literal["lowest", "skip"]
_Ranked = tuple[int, Candidate]  # (1-based rank, candidate)
_Stage = tuple[SkipReason, Callable[[Candidate], bool]]

_COLUMNS: tuple[Column, ...] = (
    ("prompt", "messages"),
    ("chosen", "messages"),
    ("rejected", "messages"),
    ("id", "str"),
    ("pair_id", "str"),
    ("strategy", "str"),
    ("chosen_agent", "str"),
    ("chosen_reward", "float"),
    ("chosen_node", "int"),
    ("rejected_agent", "str"),
    ("rejected_reward", "float"),
    ("rejected_node", "int"),
    ("rejected_rank", "int"),
    ("n_candidates", "int"),
)


@dataclass(frozen=True, kw_only=True, slots=True)
class DPOOptions:
    """How DPO pairs are made (see the module docstring for the search in full).

    Attributes:
        system_prompt: a system message put first when the conversation has none; None: none.
        min_reward: leave out prompts whose best raw reward is below this (inclusive, in the
            reward's units); the rejected response has no lower bound.
        rejected_rank: K >= 2, the rank of the rejected response (the paper: 30 of 160);
            None: the lowest-ranked.
        if_short: with fewer than K candidates: 'lowest' takes the lowest, 'skip' leaves out.
        min_margin: the reward gap a pair must exceed (>= 0, reward units; 0: no ties).
        pairs_per_prompt: pairs per prompt at most (>= 1), all with the best as chosen.
        different_agents: require the rejected response to come from another agent.
        max_length_ratio: drop pairs whose chosen/rejected length ratio (characters) is above
            this (> 0); None: no cap (the ratio is still reported).
        dedupe: 'near' (normalised text), 'exact' or 'none': duplicates among the candidates.
    """

    system_prompt: str | None = None
    min_reward: float | None = None
    rejected_rank: int | None = None
    if_short: IfShort = "lowest"
    min_margin: float = 0.0
    pairs_per_prompt: int = 1
    different_agents: bool = False
    max_length_ratio: float | None = None
    dedupe: Dedupe = "near"

    def __post_init__(self) -> None:
        check_finite("min_reward", self.min_reward)
        check_finite("min_margin", self.min_margin, minimum=0.0)
        check_finite("max_length_ratio", self.max_length_ratio, minimum=0.0)
        if self.max_length_ratio == 0:
            raise ExportError("max_length_ratio must be > 0 (or None for no cap)")
        if self.rejected_rank is not None and self.rejected_rank < 2:
            raise ExportError(
                f"rejected_rank must be >= 2 (1 is the chosen), not {self.rejected_rank}"
            )
        if self.pairs_per_prompt < 1:
            raise ExportError(f"pairs_per_prompt must be >= 1, got {self.pairs_per_prompt}")
        if self.if_short not in ("lowest", "skip"):
            raise ExportError(f"if_short must be lowest or skip, got {self.if_short!r}")
        if self.dedupe not in ("near", "exact", "none"):
            raise ExportError(f"dedupe must be near, exact or none, got {self.dedupe!r}")


def dpo_columns() -> tuple[Column, ...]:
    """The columns of a DPO export, in order."""
    return _COLUMNS


def _search_order(ranked: list[Candidate], options: DPOOptions) -> tuple[list[_Ranked], bool]:
    """Rejected candidates in the order they are tried, and whether the rank fell back."""
    numbered = list(enumerate(ranked, start=1))[1:]  # rank 1 is the chosen
    k = options.rejected_rank
    if k is None:
        return numbered[::-1], False
    if len(ranked) >= k:
        return numbered[k - 2 :], False
    return (numbered[::-1], True) if options.if_short == "lowest" else ([], False)


def _stages(
    best: Candidate, options: DPOOptions
) -> list[tuple[SkipReason, Callable[[Candidate], bool]]]:
    """The qualifying tests, in order, each with the reason given when nothing passes it."""
    best_key = dedupe_key(best.response, options.dedupe)
    return [
        ("only_duplicates", lambda c: dedupe_key(c.response, options.dedupe) != best_key),
        ("no_margin", lambda c: best.reward > c.reward + options.min_margin),
        ("same_agent", lambda c: not options.different_agents or c.agent != best.agent),
    ]


def _pick(
    best: Candidate, order: list[_Ranked], options: DPOOptions
) -> tuple[list[_Ranked], SkipReason | None, int]:
    """The rejected candidates taken, the reason when none is, and pairs dropped by the cap."""
    pool = order
    for reason, passes in _stages(best, options):
        pool = [item for item in pool if passes(item[1])]
        if not pool:
            return [], reason, 0
    taken: list[_Ranked] = []
    capped = 0
    cap = options.max_length_ratio
    for item in pool:
        if cap is not None and length_ratio(best, item[1]) > cap:
            capped += 1
            continue
        taken.append(item)
        if len(taken) == options.pairs_per_prompt:
            break
    return taken, (None if taken else "length_ratio"), capped


def _row(
    result: Mapping[str, Any],
    messages: list[dict[str, str]],
    best: Candidate,
    rejected: _Ranked,
    n_candidates: int,
) -> dict[str, Any]:
    rank, worse = rejected
    prompt_id = str(result.get("id"))
    return {
        "prompt": messages,
        "chosen": [assistant_message(best)],
        "rejected": [assistant_message(worse)],
        "id": prompt_id,
        "pair_id": f"{prompt_id}/{best.node}-{worse.node}",
        "strategy": str(result.get("strategy") or ""),
        "chosen_agent": best.agent,
        "chosen_reward": best.reward,
        "chosen_node": best.node,
        "rejected_agent": worse.agent,
        "rejected_reward": worse.reward,
        "rejected_node": worse.node,
        "rejected_rank": rank,
        "n_candidates": n_candidates,
    }


def to_dpo_pairs(
    result: Mapping[str, Any],
    options: DPOOptions,
    tree: SearchTree | None = None,
) -> Converted:
    """The DPO pairs of one result line (0 to `pairs_per_prompt`), or the reason there are none.

    Guarantees for every pair: chosen_reward > rejected_reward + min_margin, the two texts
    differ (under the `dedupe` mode's normal form), and pair_id is unique within the prompt.
    """
    if result.get("status") != "done":
        return Converted(skip="failed_search")
    messages = prompt_messages(result, options.system_prompt)
    scored, dropped = candidates(result, tree)
    ranked, removed = dedupe(scored, options.dedupe)
    if removed:
        dropped["duplicate"] += removed
    out = Converted(samples_dropped=dropped)
    out.skip = _precheck(messages, scored, ranked, options)
    if out.skip is not None or messages is None:
        return out
    order, out.rank_fallback = _search_order(ranked, options)
    if not order:
        out.skip = "too_few_for_rank"
        return out
    taken, out.skip, capped = _pick(ranked[0], order, options)
    if capped:
        out.pairs_dropped["length_ratio"] += capped
    out.rows = [_row(result, messages, ranked[0], item, len(ranked)) for item in taken]
    return out


def _precheck(
    messages: list[dict[str, str]] | None,
    scored: list[Candidate],
    ranked: list[Candidate],
    options: DPOOptions,
) -> SkipReason | None:
    """Why the prompt cannot give a pair before any rejected response is looked at, or None."""
    if messages is None:
        return "bad_result"
    if not ranked:
        return "no_scored_response"
    if options.min_reward is not None and ranked[0].reward < options.min_reward:
        return "below_min_reward"
    if len(ranked) < 2:
        return "only_duplicates" if len(scored) >= 2 else "single_response"
    return None
