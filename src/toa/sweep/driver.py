"""Running a sweep: every cell a normal run (`toa.engine.runner.run`) into ``cells/<name>``, all
sharing one generation cache, cheapest first; then ``sweep.json`` and ``sweep.csv``.

A rerun with the same arguments continues: a finished cell is a finished run, which the engine
skips (it sends nothing), an interrupted one resumes, and the shared cache answers any request
another cell already made.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from toa.config import load_config, with_overrides
from toa.engine.preflight import check_start
from toa.engine.runner import ProgressSink, RunReport, run
from toa.errors import ConfigError, InputError
from toa.inputs.readers import read_prompts
from toa.settings import RunSettings
from toa.store.manifest import generation_settings
from toa.sweep.evaluate import check_eval_fields, check_eval_kind, check_eval_setup, evaluate_cached
from toa.sweep.plan import (
    CALIBRATION_DIR,
    INPUTS_DIR,
    SINGLE_AGENT_STRATEGIES,
    SWEEP_MANIFEST,
    Cell,
    SweepPlan,
    check_rerun,
    read_sweep_manifest,
    resolve_single_agent,
)
from toa.sweep.plots import plot_sweep
from toa.sweep.summary import read_results, summarize_cell
from toa.types import Prompt

logger = logging.getLogger(__name__)

__all__ = [
    "SWEEP_CSV",
    "SWEEP_JSON",
    "PreparedSweep",
    "SweepReport",
    "calibration_choice",
    "compare_line",
    "prepare_sweep",
    "run_sweep",
    "sweep_csv",
    "sweep_document",
    "write_outputs",
]

SWEEP_JSON = "sweep.json"
SWEEP_CSV = "sweep.csv"

ProgressFactory = Callable[[str], AbstractContextManager[ProgressSink | None]]
"""Makes the progress display of one cell from its description ("toa b8 (3/9)")."""


@dataclass(frozen=True)
class PreparedSweep:
    """A checked sweep: its plan, its base settings and each cell's, the cells a rerun adds,
    and with ``--single-agent auto`` the two slices of the input (evaluation, calibration)."""

    plan: SweepPlan
    base: RunSettings
    settings: dict[Cell, RunSettings]
    eval_kind: str | None = None
    added: tuple[str, ...] = ()
    rerun: bool = False
    evaluation: tuple[Prompt, ...] = ()
    calibration: tuple[Prompt, ...] = ()


@dataclass
class SweepReport:
    """What `run_sweep` did: the cells' entries (as in sweep.json), interrupted or not."""

    sweep_dir: Path
    cells: list[dict[str, Any]] = field(default_factory=list)
    reports: dict[str, RunReport] = field(default_factory=dict)
    interrupted: bool = False
    calibration: dict[str, Any] | None = None
    plots: list[Path] = field(default_factory=list)  # the PNG files (`toa.sweep.plots`)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if any(r.exit_code for r in self.reports.values()) else 0


def _cell_settings(
    base: RunSettings, plan: SweepPlan, cell: Cell, agent: str | None
) -> RunSettings:
    return with_overrides(
        base,
        strategy=cell.strategy,
        budget=cell.budget,
        cache=str(plan.cache_path),
        agent=agent if cell.strategy in SINGLE_AGENT_STRATEGIES else None,
    )


def _split(plan: SweepPlan) -> tuple[tuple[Prompt, ...], tuple[Prompt, ...]]:
    """The evaluation slice (the first prompts, `limit` applied) and the calibration slice (the
    last `plan.calibration` good prompts of the input)."""
    assert plan.calibration is not None
    prompts = [
        p
        for p in read_prompts(plan.input_path, prompt_field=plan.prompt_field)
        if not isinstance(p, InputError)
    ]
    if len(prompts) <= plan.calibration:
        raise ConfigError(
            f"--calibration {plan.calibration}: {plan.input_path} holds {len(prompts)} good "
            "prompt(s); the calibration slice must leave some to sweep"
        )
    for p in prompts:
        clash = sorted({"instruction", "prompt", "messages"} & set(p.extra))
        if clash:
            raise ConfigError(
                f"--calibration: prompt {p.id!r} carries the field {clash[0]!r} beside its "
                "prompt; the slices are written as messages rows, which it would replace"
            )
    evaluation = prompts[: -plan.calibration]
    if plan.limit is not None:
        evaluation = evaluation[: plan.limit]
    return tuple(evaluation), tuple(prompts[-plan.calibration :])


def prepare_sweep(plan: SweepPlan, *, eval_kind: str | None = None) -> PreparedSweep:
    """Every check made before any call: the configuration, each cell's settings (the single
    agent of random / prs), the evaluator's field in every input row, the rerun's arguments
    against `sweep_manifest.json`. Raises `ConfigError` / `InputError` naming what is wrong."""
    if plan.sweep_dir.exists() and not plan.sweep_dir.is_dir():
        raise ConfigError(f"{plan.sweep_dir}: exists and is not a directory")
    if not plan.input_path.is_file():
        raise InputError(f"{plan.input_path}: no such input file")
    if not plan.config_path.is_file():
        raise ConfigError(f"{plan.config_path}: no such configuration file")
    if eval_kind is not None:
        check_eval_kind(eval_kind)
    base = load_config(plan.config_path)
    if eval_kind is None and base.config_data.get("eval") is not None:
        eval_kind = "config"  # the configuration's own `eval:` section
    if eval_kind is not None:
        check_eval_setup(eval_kind, base.config_data, str(plan.config_path))
    agent = resolve_single_agent(
        base, plan.strategies, plan.single_agent, calibration=plan.calibration
    )
    # With `auto` the agent is known after the calibration run; the first one stands in for
    # the checks made now.
    stand_in = base.agents[0].name if agent == "auto" else agent
    settings = {cell: _cell_settings(base, plan, cell, stand_in) for cell in plan.cells}
    for cell, cell_settings in settings.items():  # keys set, each cell's directory a run or new
        check_start(cell_settings, input_path=plan.input_path, run_dir=plan.cell_dir(cell))
    evaluation: tuple[Prompt, ...] = ()
    calibration: tuple[Prompt, ...] = ()
    if plan.calibration is not None:
        evaluation, calibration = _split(plan)
    if eval_kind is not None:
        rows = (
            (p.id, p.extra)
            for p in (
                evaluation
                or read_prompts(plan.input_path, prompt_field=plan.prompt_field, limit=plan.limit)
            )
            if not isinstance(p, InputError)
        )
        check_eval_fields(eval_kind, rows, str(plan.input_path), base.config_data)
    old = read_sweep_manifest(plan.sweep_dir)
    if old is None and plan.sweep_dir.is_dir() and any(plan.sweep_dir.iterdir()):
        raise ConfigError(
            f"{plan.sweep_dir}: a non-empty directory that is not a sweep (no {SWEEP_MANIFEST})"
        )
    final = replace(plan, single_agent=agent)
    generation = generation_settings(base)
    added = (
        tuple(check_rerun(old, final.manifest(generation), plan.sweep_dir))
        if old is not None
        else ()
    )
    return PreparedSweep(
        final, base, settings, eval_kind, added, old is not None, evaluation, calibration
    )


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_prompts(path: Path, prompts: tuple[Prompt, ...]) -> Path:
    """A slice as JSONL (id, messages, the other fields), rewritten only when it changed."""
    lines = [
        json.dumps(
            {"id": p.id, "messages": [m.to_dict() for m in p.messages], **p.extra},
            ensure_ascii=False,
            default=str,
        )
        for p in prompts
    ]
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        _write_atomic(path, text)
    return path


def calibration_choice(run_dir: Path, agents: tuple[str, ...]) -> dict[str, Any]:
    """The calibration run's numbers: each agent's mean reward (one fresh answer per prompt)
    and the agent with the best (ties: the first in the configuration)."""
    rewards: dict[str, list[float]] = {a: [] for a in agents}
    rows = read_results(run_dir)
    for row in rows:
        for sample in row.get("samples", []):
            if sample.get("reward") is not None and sample.get("agent") in rewards:
                rewards[sample["agent"]].append(float(sample["reward"]))
    means = {a: round(sum(v) / len(v), 6) for a, v in rewards.items() if v}
    if not means:
        raise ConfigError(f"{run_dir}: the calibration run has no scored answer to choose from")
    chosen = max(means, key=lambda a: (means[a], -agents.index(a)))
    return {"prompts": len(rows), "mean_reward": means, "agent": chosen}


async def _calibrate(
    prepared: PreparedSweep,
    report: SweepReport,
    progress: ProgressFactory | None,
    stop: asyncio.Event | None,
) -> str | None:
    """Run the calibration slice (an ensemble with one fresh answer per agent, sharing the
    cache) and return the chosen agent; None when stopped."""
    plan = prepared.plan
    inputs = plan.sweep_dir / INPUTS_DIR
    path = _write_prompts(inputs / "calibration.jsonl", prepared.calibration)
    agents = tuple(a.name for a in prepared.base.agents)
    settings = with_overrides(
        prepared.base, strategy="ensemble", budget=len(agents), cache=str(plan.cache_path)
    )
    run_dir = plan.sweep_dir / CALIBRATION_DIR
    description = f"calibration (ensemble b{len(agents)})"
    with progress(description) if progress is not None else nullcontext() as sink:
        result = await run(settings, input_path=path, run_dir=run_dir, progress=sink, stop=stop)
    report.reports[CALIBRATION_DIR] = result
    if result.interrupted:
        return None
    report.calibration = {
        "run_dir": CALIBRATION_DIR,
        "strategy": "ensemble",
        "budget": len(agents),
        **calibration_choice(run_dir, agents),
    }
    return str(report.calibration["agent"])


async def run_sweep(
    prepared: PreparedSweep,
    *,
    progress: ProgressFactory | None = None,
    stop: asyncio.Event | None = None,
) -> SweepReport:
    """Run (or continue) every cell, cheapest first; write sweep.json and sweep.csv after each
    finished cell. Setting `stop` ends the cell in flight cleanly (`run`'s clean stop) and
    starts no other; the same arguments later continue where it stopped. With
    ``--single-agent auto`` the calibration slice runs first and chooses random's agent; the
    cells then run on the evaluation slice (``inputs/evaluation.jsonl``)."""
    plan = prepared.plan
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    manifest = plan.manifest(generation_settings(prepared.base))
    _write_atomic(plan.sweep_dir / SWEEP_MANIFEST, json.dumps(manifest, indent=2) + "\n")
    report = SweepReport(plan.sweep_dir)
    settings = dict(prepared.settings)
    input_path, limit, prompt_field = plan.input_path, plan.limit, plan.prompt_field
    if prepared.calibration:
        chosen = await _calibrate(prepared, report, progress, stop)
        if chosen is None:
            report.interrupted = True
            return report
        settings = {cell: _cell_settings(prepared.base, plan, cell, chosen) for cell in plan.cells}
        evaluation = plan.sweep_dir / INPUTS_DIR / "evaluation.jsonl"
        input_path = _write_prompts(evaluation, prepared.evaluation)
        limit, prompt_field = None, None
    cells = plan.cells
    for index, cell in enumerate(cells, start=1):
        if stop is not None and stop.is_set():
            report.interrupted = True
            break
        description = f"{cell.strategy} b{cell.budget} ({index}/{len(cells)})"
        run_dir = plan.cell_dir(cell)
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        with progress(description) if progress is not None else nullcontext() as sink:
            cell_report = await run(
                settings[cell],
                input_path=input_path,
                run_dir=run_dir,
                prompt_field=prompt_field,
                limit=limit,
                progress=sink,
                stop=stop,
            )
        report.reports[cell.name] = cell_report
        if cell_report.interrupted:
            report.interrupted = True
            break
        entry: dict[str, Any] = {
            "name": cell.name,
            "strategy": cell.strategy,
            "budget": cell.budget,
            "run_dir": f"{run_dir.relative_to(plan.sweep_dir).as_posix()}",
            **summarize_cell(run_dir),
        }
        if prepared.eval_kind is not None:
            block = await evaluate_cached(
                run_dir,
                prepared.eval_kind,
                run_config=settings[cell].config_data,
                source=str(run_dir / "manifest.json"),
            )
            entry["eval"] = {
                k: v for k, v in block.items() if k not in ("results_sha256", "evaluator")
            }
        report.cells.append(entry)
        write_outputs(prepared, report.cells, report.calibration)
    report.plots = _plots(prepared, report)
    return report


def _plots(prepared: PreparedSweep, report: SweepReport) -> list[Path]:
    """The sweep's pictures of the cells done so far; none (with a warning) without matplotlib."""
    if not report.cells:
        return []
    document = sweep_document(prepared, report.cells, report.calibration)
    try:
        return plot_sweep(document, prepared.plan.sweep_dir)
    except ConfigError as exc:
        logger.warning("no plots: %s", exc)
        return []


def sweep_document(
    prepared: PreparedSweep,
    cells: list[dict[str, Any]],
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What sweep.json holds: the sweep's arguments, the calibration (``auto``), the cells."""
    plan = prepared.plan
    manifest = plan.manifest()
    return {
        "config": manifest["config"],
        "input": manifest["input"],
        "prompt_field": plan.prompt_field,
        "limit": plan.limit,
        "single_agent": plan.single_agent if calibration is None else calibration["agent"],
        "calibration": calibration,
        "strategies": list(plan.strategies),
        "budgets": list(plan.budgets),
        "eval": prepared.eval_kind,
        "cells": cells,
    }


def write_outputs(
    prepared: PreparedSweep,
    cells: list[dict[str, Any]],
    calibration: dict[str, Any] | None = None,
) -> None:
    """sweep.json (the whole sweep) and sweep.csv (one row per cell)."""
    sweep_dir = prepared.plan.sweep_dir
    document = sweep_document(prepared, cells, calibration)
    _write_atomic(sweep_dir / SWEEP_JSON, json.dumps(document, indent=2, sort_keys=False) + "\n")
    _write_atomic(sweep_dir / SWEEP_CSV, sweep_csv(cells))


def sweep_csv(cells: list[dict[str, Any]]) -> str:
    """One row per cell: the scalar fields, ``best_agent_share`` as ``agent:share;...``, each
    agent's compute as ``<field>_<agent>`` (``calls_qwen``, ...) and the eval block's fields as
    ``eval_<name>``."""
    rows = []
    for cell in cells:
        row = {k: v for k, v in cell.items() if k not in ("best_agent_share", "eval", "by_agent")}
        row["best_agent_share"] = ";".join(
            f"{a}:{s}" for a, s in cell.get("best_agent_share", {}).items()
        )
        for agent, part in (cell.get("by_agent") or {}).items():
            for k, v in part.items():
                row[f"{k}_{agent}"] = v
        for k, v in (cell.get("eval") or {}).items():
            row[f"eval_{k}"] = v
        rows.append(row)
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})
    return out.getvalue()


def compare_line(cells: list[dict[str, Any]], *, champion: str = "toa") -> list[str]:
    """At each budget: `champion`'s mean best reward against the best other strategy's (only
    where both have at least 2 prompts with a best answer)."""
    lines = []
    for budget in sorted({c["budget"] for c in cells}):
        here = [c for c in cells if c["budget"] == budget]
        ours = next((c for c in here if c["strategy"] == champion), None)
        others = [
            c for c in here
            if c["strategy"] != champion and c["mean_best_reward"] is not None
            and c["with_best"] >= 2
        ]  # fmt: skip
        if ours is None or not others:
            continue
        if ours["mean_best_reward"] is None or ours["with_best"] < 2:
            lines.append(f"budget {budget}: too few prompts with a best answer to compare")
            continue
        best = max(others, key=lambda c: (c["mean_best_reward"], c["strategy"]))
        delta = ours["mean_best_reward"] - best["mean_best_reward"]
        verdict = (
            "ties" if abs(delta) < 1e-9
            else f"wins by {delta:+.3f}" if delta > 0 else f"loses by {delta:+.3f}"
        )  # fmt: skip
        lines.append(
            f"budget {budget}: {champion} {ours['mean_best_reward']:.3f} vs {best['strategy']} "
            f"{best['mean_best_reward']:.3f} ({champion} {verdict}, {ours['with_best']} vs "
            f"{best['with_best']} prompts)"
        )
    return lines
