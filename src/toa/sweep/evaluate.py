"""Evaluation apart from the reward: each prompt's chosen best answer (and its top k) scored again
by an evaluator built like a reward.

Kinds (`EVAL_KINDS`): ``verify`` (math answer checking against the row's ``gold_answer``; the
accuracy is the fraction of prompts whose best answer verifies), ``chrf`` and ``bleu`` (against
the row's ``reference``), ``reward`` (the run's own reward, from its manifest), ``config`` (the
configuration's ``eval:`` section: any reward kind, e.g. a ``judge`` through one of the agents or
an ``http`` reward model; the default of `toa sweep` when the configuration has one),
``judge:AGENT`` (the `judge` reward, yes/no mode, through the configured agent AGENT; ``judge``
alone: the ``eval:`` section, which must be a judge). Rows that lack the field an evaluator needs
are refused before anything is scored (`check_eval_fields`).

Each evaluated run directory keeps its block in ``eval.json`` with what it was computed from
(the evaluator and the sha256 of ``results.jsonl``): evaluating the same results with the same
evaluator again reads it back and scores nothing (a judge is not paid twice).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from toa.config import parse_config
from toa.config.rewards import (
    BleuRewardConfig,
    ChrfRewardConfig,
    JudgeRewardConfig,
    RewardConfig,
    VerifyRewardConfig,
    build_reward,
)
from toa.errors import ConfigError
from toa.rewards import RewardModel
from toa.store.layout import RESULTS_NAME
from toa.store.manifest import generation_config, read_manifest
from toa.sweep.summary import TOP_K, mean, read_results, top_rewards
from toa.types import Message, Prompt, ScoreFailure

__all__ = [
    "EVAL_FIELDS",
    "EVAL_KINDS",
    "EVAL_NAME",
    "check_eval_fields",
    "check_eval_kind",
    "check_eval_setup",
    "eval_section",
    "evaluate_cached",
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
    "judge": None,
}
"""Each evaluation kind and the row field it needs (None: none); ``judge`` also as
``judge:AGENT``."""
EVAL_KINDS: tuple[str, ...] = tuple(EVAL_FIELDS)
_USES_CONFIG = ("reward", "config", "judge")  # kinds built from the run's configuration


def _base_kind(kind: str) -> str:
    return "judge" if kind.startswith("judge:") else kind


def check_eval_kind(kind: str) -> str:
    if _base_kind(kind) not in EVAL_FIELDS or kind == "judge:":
        raise ConfigError(
            f"--eval: unknown kind {kind!r}; choose one of {', '.join(EVAL_KINDS[:-1])}, "
            "judge:AGENT (a judge through a configured agent) or judge (the `eval:` section)"
        )
    return kind


def _judge_section(kind: str, run_config: Mapping[str, Any] | None, source: str) -> dict[str, Any]:
    """The judge's reward section for ``judge:AGENT`` / ``judge``, checked."""
    if kind == "judge":
        section = dict(eval_section(run_config, source))
        if section.get("type") != "judge":
            raise ConfigError(
                f"--eval judge: the `eval:` section of {source} is a {section.get('type')!r} "
                "reward, not a judge; use --eval config for it, or --eval judge:AGENT"
            )
        return section
    agent = kind.split(":", 1)[1]
    names = [a.get("name") for a in (run_config or {}).get("agents", [])]
    if agent not in names:
        raise ConfigError(f"--eval {kind}: {agent!r} is not one of the agents {names} ({source})")
    return {"type": "judge", "agent": agent}


def check_eval_setup(kind: str, run_config: Mapping[str, Any] | None, source: str) -> None:
    """Everything about the evaluator that can be checked before any call: the kind, the
    ``eval:`` section (``config``) and the judge's agent (``judge``, ``judge:AGENT``)."""
    check_eval_kind(kind)
    if kind == "config":
        eval_section(run_config, source)
    elif _base_kind(kind) == "judge":
        _judge_section(kind, run_config, source)


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
    if isinstance(agent, str) and agent not in names:  # a mapping is an inline endpoint
        raise ConfigError(f"{source}: eval.agent {agent!r} is not one of the agents {names}")
    return section


def _needed_field(kind: str, run_config: Mapping[str, Any] | None) -> str | None:
    if kind != "config":
        return EVAL_FIELDS[_base_kind(check_eval_kind(kind))]
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
    if _base_kind(kind) == "judge":
        judge = JudgeRewardConfig.model_validate(_judge_section(kind, run_config, source))
        settings = parse_config(dict(run_config or {}), source=source)
        return judge.build({a.name: a for a in settings.agents})
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


def evaluator_identity(kind: str, run_config: Mapping[str, Any] | None, k: int) -> dict[str, Any]:
    """What an evaluation's numbers depend on besides the results: the kind, k, and for kinds
    built from the configuration its generation-relevant part (agents without their endpoints
    and limits) and its ``eval:`` section."""
    identity: dict[str, Any] = {"kind": kind, "top_k": k}
    if _base_kind(kind) in _USES_CONFIG and run_config is not None:
        identity["config"] = generation_config(run_config)
        identity["eval"] = run_config.get("eval")
    return identity


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


async def evaluate_cached(
    run_dir: Path,
    kind: str,
    *,
    run_config: Mapping[str, Any] | None,
    source: str,
    k: int = TOP_K,
) -> dict[str, Any]:
    """`evaluate_rows` over `run_dir`'s results, kept in ``RUN_DIR/eval.json``: the same
    results (sha256 of results.jsonl) with the same evaluator read the block back, no score is
    asked for again. The block carries ``results_sha256`` and ``evaluator``."""
    digest = _sha256(run_dir / RESULTS_NAME)
    identity = evaluator_identity(kind, run_config, k)
    path = run_dir / EVAL_NAME
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        kept = None
    if (
        isinstance(kept, dict)
        and digest is not None
        and kept.get("results_sha256") == digest
        and kept.get("evaluator") == identity
    ):
        return kept
    rows = read_results(run_dir)
    block = await evaluate_rows(rows, kind, run_config=run_config, source=source, k=k)
    block["results_sha256"] = digest
    block["evaluator"] = identity
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(block, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return block


async def evaluate_run(run_dir: Path, kind: str, *, k: int = TOP_K) -> dict[str, Any]:
    """`evaluate_cached` over a run directory (`reward`: its manifest's reward; `config`,
    `judge`: its manifest's configuration)."""
    check_eval_kind(kind)
    manifest = read_manifest(run_dir)
    if not read_results(run_dir):
        raise ConfigError(f"{run_dir}: no finished prompt to evaluate (results.jsonl is empty)")
    config = manifest.get("config") if _base_kind(kind) in _USES_CONFIG else None
    source = str(run_dir / "manifest.json")
    check_eval_setup(kind, config, source)
    return await evaluate_cached(run_dir, kind, run_config=config, source=source, k=k)
