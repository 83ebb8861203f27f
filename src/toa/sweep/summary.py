"""A finished cell in numbers, from its run directory: rewards, compute, who wrote the best.

Everything here is read from the cell's ``results.jsonl`` and its store, never from the process
that ran it, so a rerun (or a run that was stopped and continued) gives the same numbers.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from toa.errors import StoreError
from toa.store.layout import RESULTS_NAME, STORE_NAME
from toa.store.run_store import RunStore

__all__ = [
    "TOP_K",
    "mean",
    "read_results",
    "summarize_cell",
    "top_rewards",
]

TOP_K = 10
"""How many of a prompt's best-scored samples the top-k numbers average (fewer when fewer)."""

_ROUND = 6


def read_results(run_dir: Path) -> list[dict[str, Any]]:
    """The run's result lines, sorted by prompt id (deterministic sums)."""
    path = run_dir / RESULTS_NAME
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return sorted(rows, key=lambda r: str(r.get("id")))


def mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), _ROUND) if values else None


def top_rewards(row: dict[str, Any], k: int = TOP_K) -> list[dict[str, Any]]:
    """The row's scored samples, best first (ties: the earlier node), at most `k`."""
    scored = [s for s in row.get("samples", []) if s.get("reward") is not None]
    scored.sort(key=lambda s: (-float(s["reward"]), int(s.get("node", 0))))
    return scored[:k]


def _sent_and_cached(run_dir: Path, prompt_ids: list[str]) -> tuple[int, int]:
    """Calls this cell sent to an agent (failed ones included) and calls the shared generation
    cache answered, from the store's call records (a cache hit is stored with 0 attempts).
    Counted by request, so a call replayed on a resume counts once, where it was first made."""
    sent: set[tuple[str, str, bool]] = set()
    cached: set[tuple[str, str]] = set()
    path = run_dir / STORE_NAME
    if not path.exists():
        return 0, 0
    try:
        with RunStore.open_readonly(path) as store:
            for pid in prompt_ids:
                records = [*store.calls_for(pid).values(), *store.spare_calls_for(pid)]
                for rec in records:
                    if rec.ok and rec.attempts == 0:
                        cached.add((pid, rec.request_hash))
                    else:
                        sent.add((pid, rec.request_hash, rec.ok))
    except StoreError:
        return 0, 0
    return len(sent), len(cached)


def busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """The length of the union of ``(start, end)`` intervals: the time something was running."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total


def _elapsed(run_dir: Path, rows: list[dict[str, Any]]) -> float | None:
    """The cell's wall time: how long at least one of its prompts was running (each prompt from
    its result's time less its ``wall_s`` to its result's time), so the pauses between a
    stopped sweep and its continuation do not count. None without a readable store."""
    path = run_dir / STORE_NAME
    if not path.exists():
        return None
    try:
        with RunStore.open_readonly(path) as store:
            finished = store.finished_times()
    except StoreError:
        return None
    intervals = []
    for row in rows:
        end = finished.get(str(row.get("id")))
        wall = (row.get("compute") or {}).get("wall_s")
        if end is not None and isinstance(wall, int | float):
            intervals.append((end - float(wall), end))
    return busy_seconds(intervals)


def by_agent(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Each agent's generations in the cell: calls, failed calls, prompt and completion tokens
    (summed over the prompts' ``compute.by_agent``)."""
    totals: dict[str, dict[str, int]] = {}
    for row in rows:
        for agent, part in ((row.get("compute") or {}).get("by_agent") or {}).items():
            mine = totals.setdefault(
                str(agent),
                {"calls": 0, "failed_calls": 0, "prompt_tokens": 0, "completion_tokens": 0},
            )
            for key in mine:
                value = part.get(key) if isinstance(part, dict) else None
                mine[key] += int(value) if isinstance(value, int | float) else 0
    return dict(sorted(totals.items()))


def _compute_total(rows: list[dict[str, Any]], name: str) -> float:
    return sum(float(r.get("compute", {}).get(name, 0) or 0) for r in rows)


def _iter_best(rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for row in rows:
        best = row.get("best")
        if isinstance(best, dict) and best.get("reward") is not None:
            yield best


def summarize_cell(run_dir: Path, *, k: int = TOP_K) -> dict[str, Any]:
    """The numbers of one cell (the `sweep.json` cell fields other than its name and eval).

    ``calls`` counts every generation of the cell's trees (cache hits included);
    ``calls_sent`` those sent to an agent by this cell (once each, even when a resume replayed
    them), ``cached_calls`` those the shared cache answered; ``wall_s`` the cell's wall time (how
    long at least one of its prompts was running; pauses between invocations left out),
    ``prompt_wall_s`` the prompts' wall times summed (several prompts run at once); ``by_agent``
    each agent's calls, failed calls and tokens."""
    rows = read_results(run_dir)
    bests = list(_iter_best(rows))
    tops = [top_rewards(r, k) for r in rows]
    sent, cached = _sent_and_cached(run_dir, [str(r.get("id")) for r in rows])
    agents = Counter(str(b.get("agent")) for b in bests)
    elapsed = _elapsed(run_dir, rows)
    return {
        "prompts": len(rows),
        "done": sum(r.get("status") == "done" for r in rows),
        "failed": sum(r.get("status") != "done" for r in rows),
        "with_best": len(bests),
        "mean_best_reward": mean([float(b["reward"]) for b in bests]),
        "top_k": k,
        "mean_topk_reward": mean([sum(float(s["reward"]) for s in t) / len(t) for t in tops if t]),
        "calls": int(_compute_total(rows, "calls")),
        "calls_sent": sent,
        "cached_calls": cached,
        "failed_calls": int(_compute_total(rows, "failed_calls")),
        "prompt_tokens": int(_compute_total(rows, "prompt_tokens")),
        "completion_tokens": int(_compute_total(rows, "completion_tokens")),
        "flops": _compute_total(rows, "flops"),
        "reward_calls": int(_compute_total(rows, "reward_calls")),
        "failed_rewards": int(_compute_total(rows, "failed_rewards")),
        "cost_usd": round(_compute_total(rows, "cost_usd"), _ROUND),
        "best_agent_share": {
            agent: round(n / len(bests), _ROUND) for agent, n in sorted(agents.items())
        },
        "by_agent": by_agent(rows),
        "wall_s": None if elapsed is None else round(elapsed, 3),
        "prompt_wall_s": round(_compute_total(rows, "wall_s"), 3),
    }
