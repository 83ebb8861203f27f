"""Evaluation apart from the reward: each prompt's chosen best answer (and its top k) scored again
by an evaluator built like a reward.

Kinds (`EVAL_KINDS`): ``verify`` (math answer checking against the row's ``gold_answer``; the
accuracy is the fraction of prompts whose best answer verifies), ``chrf`` and ``bleu`` (against
the row's ``reference``), ``reward`` (the run's own reward, from its manifest), ``config`` (the
configuration's ``eval:`` section: any reward kind, e.g. a ``judge`` through one of the agents or
an ``http`` reward model; the default of `toa sweep` when the configuration has one). Rows that
lack the field an evaluator needs are refused before anything is scored (`check_eval_fields`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from toa.config import parse_config
from toa.config.rewards import (
    BleuRewardConfig,
    ChrfRewardConfig,
    RewardConfig,
    VerifyRewardConfig,
    build_reward,
)
from toa.errors import ConfigError
from toa.rewards import RewardModel
from toa.store.manifest import read_manifest
from toa.sweep.summary import TOP_K, mean, read_results, top_rewards
from toa.types import Message, Prompt, ScoreFailure

__all__ = [
    "EVAL_FIELDS",
    "EVAL_KINDS",
    "EVAL_NAME",
    "check_eval_fields",
    "check_eval_kind",
    "eval_section",
    "evaluate_rows",
    "evaluate_run",
]

EVAL_NAME = "eval.json"
EVAL_FIELDS: Mapping[str, str | None] = {
    "verify": "gold_answer",
    "chrf": "reference",
    "bleu": "reference",
    "reward": None,
    "config": None,
}
"""Each evaluation kind and the row field it needs (None: none)."""
EVAL_KINDS: tuple[str, ...] = tuple(EVAL_FIELDS)


def check_eval_kind(kind: str) -> str:
    if kind not in EVAL_FIELDS:
        raise ConfigError(f"--eval: unknown kind {kind!r}; choose one of {', '.join(EVAL_KINDS)}")
    return kind


def eval_section(run_config: Mapping[str, Any] | None, source: str) -> Mapping[str, Any]:
    """The configuration's ``eval:`` section, checked (kind ``config``); `ConfigError` when
    there is none, it is not a valid reward, or a judge names an agent the configuration lacks."""
    section = (run_config or {}).get("eval")
    if not isinstance(section, Mapping):
        raise ConfigError(
            f"--eval config: {source} has no `eval:` section; add one (any reward kind, e.g. "
            "`eval: {type: verify}`) or choose --eval verify|chrf|bleu|reward"
        )
    try:
        TypeAdapter(RewardConfig).validate_python(dict(section))
    except ValidationError as exc:
        raise ConfigError(f"{source}: eval: {exc.errors()[0]['msg']}") from exc
    agent = section.get("agent")
    names = [a.get("name") for a in (run_config or {}).get("agents", [])]
    if agent is not None and agent not in names:
        raise ConfigError(f"{source}: eval.agent {agent!r} is not one of the agents {names}")
    return section


def _needed_field(kind: str, run_config: Mapping[str, Any] | None) -> str | None:
    if kind != "config":
        return EVAL_FIELDS[check_eval_kind(kind)]
    section = (run_config or {}).get("eval") or {}
    fields = {"verify": section.get("gold_field", "gold_answer")}
    for kind_name in ("chrf", "bleu", "comet"):
        fields[kind_name] = section.get("reference_field", "reference")
    return fields.get(str(section.get("type")))


def check_eval_fields(
    kind: str,
    rows: Iterable[tuple[str, Mapping[str, Any]]],
    where: str,
    run_config: Mapping[str, Any] | None = None,
) -> None:
    """`ConfigError` naming the field and the first rows without it, when `kind` (for
    ``config``: the configuration's ``eval:`` section) needs a field that some of `rows` (prompt
    id, extra fields) lack or leave empty."""
    wanted = _needed_field(check_eval_kind(kind), run_config)
    if wanted is None:
        return
    missing = [pid for pid, extra in rows if extra.get(wanted) in (None, "")]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise ConfigError(
            f"--eval {kind} needs the field {wanted!r} in every row; {where}: {len(missing)} "
            f"row(s) lack it ({shown})"
        )


def _evaluator(kind: str, run_config: Mapping[str, Any] | None, source: str) -> RewardModel:
    if kind == "verify":
        return VerifyRewardConfig(type="verify").build()
    if kind == "chrf":
        return ChrfRewardConfig(type="chrf").build()
    if kind == "bleu":
        return BleuRewardConfig(type="bleu").build()
    if kind == "config":
        section = eval_section(run_config, source)
        settings = parse_config(dict(run_config or {}), source=source)
        model = TypeAdapter(RewardConfig).validate_python(dict(section))
        return build_reward(model, {a.name: a for a in settings.agents})
    if run_config is None:
        raise ConfigError("--eval reward needs the run's configuration (its manifest)")
    return parse_config(run_config, source=source).build_reward()


def _prompt(row: dict[str, Any]) -> Prompt:
    messages = tuple(Message(m["role"], m["content"]) for m in row.get("messages", []))
    return Prompt(id=str(row["id"]), messages=messages, extra=dict(row.get("extra") or {}))


async def evaluate_rows(
    rows: list[dict[str, Any]],
    kind: str,
    *,
    run_config: Mapping[str, Any] | None = None,
    source: str = "<run>",
    k: int = TOP_K,
) -> dict[str, Any]:
    """Score each row's best answer and its top `k` samples (by the run's reward) with `kind`.

    Returns the `eval` block: ``prompts``, ``scored`` (prompts with a best answer scored),
    ``failed_scores``, ``mean_best`` and ``mean_topk``; for ``verify`` also ``accuracy`` (prompts
    whose best answer verifies, over all prompts: no best answer counts as wrong) and
    ``topk_accuracy`` (prompts with a verifying answer among the top k).
    """
    extras = ((str(r.get("id")), r.get("extra") or {}) for r in rows)
    check_eval_fields(kind, extras, "results", run_config)
    evaluator = _evaluator(kind, run_config, source)
    correct = VerifyRewardConfig(type="verify").correct
    bests: list[float] = []
    topk_means: list[float] = []
    right = topk_right = failures = 0
    try:
        for row in rows:
            best = row.get("best")
            if not isinstance(best, dict) or best.get("response") is None:
                continue
            texts = [str(best["response"])] + [
                str(s["response"]) for s in top_rewards(row, k) if s.get("response") is not None
            ]
            scores = await evaluator.score(_prompt(row), texts)
            failures += sum(isinstance(s, ScoreFailure) for s in scores)
            if not isinstance(scores[0], ScoreFailure):
                bests.append(float(scores[0]))
                right += float(scores[0]) == correct
            top = [float(s) for s in scores[1:] if not isinstance(s, ScoreFailure)]
            if top:
                topk_means.append(sum(top) / len(top))
                topk_right += any(v == correct for v in top)
    finally:
        await evaluator.aclose()
    block: dict[str, Any] = {
        "kind": kind,
        "prompts": len(rows),
        "scored": len(bests),
        "failed_scores": failures,
        "top_k": k,
        "mean_best": mean(bests),
        "mean_topk": mean(topk_means),
    }
    section = (run_config or {}).get("eval") if kind == "config" else None
    if kind == "verify" or (isinstance(section, Mapping) and section.get("type") == "verify"):
        block["accuracy"] = round(right / len(rows), 6) if rows else None
        block["topk_accuracy"] = round(topk_right / len(rows), 6) if rows else None
    return block


async def evaluate_run(run_dir: Path, kind: str, *, k: int = TOP_K) -> dict[str, Any]:
    """`evaluate_rows` over a run directory's results (`reward`: its manifest's reward)."""
    check_eval_kind(kind)
    manifest = read_manifest(run_dir)
    rows = read_results(run_dir)
    if not rows:
        raise ConfigError(f"{run_dir}: no finished prompt to evaluate (results.jsonl is empty)")
    config = manifest.get("config") if kind in ("reward", "config") else None
    return await evaluate_rows(
        rows, kind, run_config=config, source=str(run_dir / "manifest.json"), k=k
    )
