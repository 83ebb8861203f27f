"""The dataset card: a README.md (Hugging Face dataset card style) describing an export.

It records where the data came from (strategy, agents, reward, budget, configuration hash, seed),
how it was exported (format, options), what was kept and left out, and the reward statistics.
Built from the run manifest and the `ExportReport`; pure text, written by `export_run`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from toa.export.dpo import DPOOptions
from toa.export.report import ExportReport
from toa.export.sft import SFTOptions

__all__ = ["card_path", "render_card"]

_PAPER = "https://arxiv.org/abs/2412.17061"
_LAYOUTS = {
    "sft": "TRL conversational language modeling / prompt-completion",
    "dpo": "TRL conversational preference (prompt, chosen, rejected)",
}
_COLUMN_NOTES = {
    "messages": "the conversation, ending with the best response (assistant)",
    "prompt": "the conversation the responses answer (list of role/content messages)",
    "completion": "the best response, as one assistant message",
    "chosen": "the best response, as one assistant message",
    "rejected": "a lower-ranked response, as one assistant message",
    "id": "the prompt id in the run",
    "pair_id": "unique pair id: {id}/{chosen_node}-{rejected_node}",
    "strategy": "the search strategy that produced the responses",
    "agent": "the agent (model) that wrote the response",
    "reward": "the response's raw reward",
    "node": "the response's node id in the prompt's search tree",
    "n_candidates": "distinct scored responses the prompt had",
    "rejected_rank": "the rejected response's rank among them (1 = best)",
    "chosen_agent": "the agent (model) that wrote the chosen response",
    "chosen_reward": "the chosen response's raw reward",
    "chosen_node": "the chosen response's node id in the search tree",
    "rejected_agent": "the agent (model) that wrote the rejected response",
    "rejected_reward": "the rejected response's raw reward",
    "rejected_node": "the rejected response's node id in the search tree",
}


def card_path(out: Path, *, directory: bool) -> Path:
    """README.md inside a directory export; ``OUT.card.md`` beside a file export."""
    return out / "README.md" if directory else out.with_name(out.name + ".card.md")


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(rows: Iterable[tuple[str, object]]) -> list[str]:
    lines = ["| | |", "| --- | --- |"]
    lines.extend(f"| {_cell(key)} | {_cell(value)} |" for key, value in rows)
    return lines


def _agents(config: Mapping[str, Any]) -> str:
    agents = config.get("agents") or []
    return ", ".join(f"{a.get('name')} ({a.get('model')})" for a in agents) or "unknown"


def _reward(config: Mapping[str, Any]) -> str:
    reward = config.get("reward") or {}
    details = ", ".join(f"{k}={v}" for k, v in sorted(reward.items()) if k != "type" and v)
    return f"{reward.get('type', 'unknown')}" + (f" ({details})" if details else "")


def _generation(manifest: Mapping[str, Any]) -> list[str]:
    config = manifest.get("config") or {}
    versions = manifest.get("versions") or {}
    return [
        "## Generation",
        "",
        *_table(
            [
                ("strategy", manifest.get("strategy")),
                ("budget", f"{manifest.get('budget')} generations per prompt"),
                ("agents", _agents(config)),
                ("reward", _reward(config)),
                ("config hash", f"`{manifest.get('config_hash')}`"),
                ("seed", manifest.get("seed")),
                ("started", manifest.get("started")),
                ("toa version", versions.get("toa")),
            ]
        ),
    ]


def _export(report: ExportReport, options: SFTOptions | DPOOptions) -> list[str]:
    settings = ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(options).items())
    left = ", ".join(f"{n} {r}" for r, n in sorted(report.left_out.items())) or "none"
    dropped = ", ".join(f"{n} {r}" for r, n in sorted(report.samples_dropped.items())) or "none"
    rows: list[tuple[str, object]] = [
        ("format", f"{report.format.upper()}: {_LAYOUTS[report.format]}"),
        ("options", settings),
        ("rows", report.rows),
        ("prompts read (finished)", report.prompts_read),
        ("prompts exported", report.prompts_exported),
        ("prompts left out", f"{report.left_out_total} ({left})"),
        ("responses dropped", dropped),
    ]
    if report.pairs_dropped:
        rows.append(("pairs dropped", dict(report.pairs_dropped)))
    if report.mean_length_ratio is not None:
        rows.append(("mean chosen/rejected length ratio", f"{report.mean_length_ratio:.3f}"))
    return ["## Export", "", *_table(rows)]


def _statistics(report: ExportReport) -> list[str]:
    if not report.rewards:
        return []
    lines = [
        "## Reward statistics (raw reward units)",
        "",
        "| rows | n | mean | min | p25 | median | p75 | max |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in report.rewards.items():
        cells = (s.mean, s.min, s.p25, s.median, s.p75, s.max)
        lines.append(f"| {name} | {s.count} | " + " | ".join(f"{v:.4g}" for v in cells) + " |")
    return lines


def _columns(columns: Iterable[str]) -> list[str]:
    notes = [f"- `{name}`: {_COLUMN_NOTES.get(name, name)}" for name in columns]
    return ["## Columns", "", *notes]


def _usage(report: ExportReport) -> list[str]:
    out = report.out
    suffix = out.suffix.lower()
    if suffix == ".jsonl":
        load = f'load_dataset("json", data_files="{out.name}", split="train")'
    elif suffix == ".parquet":
        load = f'load_dataset("parquet", data_files="{out.name}", split="train")'
    else:
        load = f'load_from_disk("{out.name}")'
    trainer = "SFTTrainer" if report.format == "sft" else "DPOTrainer"
    return [
        "## Use",
        "",
        "```python",
        "from datasets import load_dataset, load_from_disk",
        "",
        f"dataset = {load}",
        f"# then: trl.{trainer}(model=..., train_dataset=dataset, ...)",
        "```",
    ]


def render_card(
    manifest: Mapping[str, Any],
    report: ExportReport,
    options: SFTOptions | DPOOptions,
    columns: Iterable[str],
) -> str:
    """The card's Markdown text, with YAML front matter for the Hugging Face Hub."""
    title = "SFT" if report.format == "sft" else "DPO preference"
    lines = [
        "---",
        f"tags: [toa, synthetic, {report.format}]",
        "task_categories: [text-generation]",
        "---",
        "",
        f"# TOA {title} dataset",
        "",
        f"Synthesised by TOA (Tree Search-based Orchestrated Agents, {_PAPER}): several",
        "language models answered each prompt, steered by tree search and a reward model.",
        f"Exported from the run directory `{report.run_dir}`.",
        "",
        *_generation(manifest),
        "",
        *_export(report, options),
        "",
        *_statistics(report),
        "",
        *_columns(columns),
        "",
        *_usage(report),
        "",
    ]
    return "\n".join(lines)
