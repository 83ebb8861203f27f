"""The sweep's pictures: the paper's figure for your own agents and data, as PNG files.

* ``scaling.png``: mean best reward (left) and, when the sweep has an evaluation, the eval score
  (right: accuracy for ``verify``, else the mean eval score of the chosen answers) against
  inference FLOPs per prompt (log scale), one line per strategy, each point labelled with its
  budget. A cell without FLOPs (agents with no ``params_b``) is drawn against calls per prompt
  instead, and the axis says so.
* ``best_agents.png``: for each strategy, the share of the best answers each agent wrote, by
  budget (stacked bars).

matplotlib is an optional extra (``pip install 'toa-synth[plot]'``; `make test` installs it);
without it `plot_sweep` raises `ConfigError` and `toa sweep` skips the pictures with a warning.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from toa.errors import ConfigError

__all__ = ["BEST_AGENTS_PNG", "SCALING_PNG", "plot_sweep"]

SCALING_PNG = "scaling.png"
BEST_AGENTS_PNG = "best_agents.png"


def _pyplot() -> Any:
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError as exc:
        raise ConfigError(
            "the sweep's plots need matplotlib: pip install 'toa-synth[plot]'"
        ) from exc
    matplotlib.use("Agg")  # files only: no display is needed or opened
    return importlib.import_module("matplotlib.pyplot")


def plot_sweep(document: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Write the sweep's PNG files (module docstring) into `out_dir`; their paths."""
    cells: Sequence[Mapping[str, Any]] = document.get("cells", [])
    if not cells:
        return []
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [_scaling(plt, document, cells, out_dir / SCALING_PNG)]
    paths.append(_best_agents(plt, cells, out_dir / BEST_AGENTS_PNG))
    return paths


def _per_prompt(cell: Mapping[str, Any], use_flops: bool) -> float | None:
    prompts = cell.get("prompts") or 0
    if not prompts:
        return None
    total = cell.get("flops") if use_flops else cell.get("calls")
    return float(total) / prompts if total else None


def _eval_score(cell: Mapping[str, Any]) -> float | None:
    block = cell.get("eval")
    if not isinstance(block, Mapping):
        return None
    value = block.get("accuracy")
    if value is None:
        value = block.get("mean_best")
    return None if value is None else float(value)


def _scaling(
    plt: Any, document: Mapping[str, Any], cells: Sequence[Mapping[str, Any]], path: Path
) -> Path:
    use_flops = all(cell.get("flops") for cell in cells)
    kind = document.get("eval")
    panels: list[tuple[str, Any]] = [("mean best reward", lambda c: c.get("mean_best_reward"))]
    if kind:
        label = "accuracy" if kind == "verify" else f"eval ({kind}): mean score of the best"
        panels.append((label, _eval_score))
    figure, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.6), squeeze=False)
    strategies = list(dict.fromkeys(str(cell["strategy"]) for cell in cells))
    for ax, (label, value_of) in zip(axes[0], panels, strict=True):
        for strategy in strategies:
            points = sorted(
                (x, float(y), int(cell["budget"]))
                for cell in cells
                if cell["strategy"] == strategy
                and (x := _per_prompt(cell, use_flops)) is not None
                and (y := value_of(cell)) is not None
            )
            if not points:
                continue
            xs, ys, _budgets = zip(*points, strict=True)
            width = 2.4 if strategy == "toa" else 1.4
            ax.plot(xs, ys, marker="o", linewidth=width, label=strategy)
            for x, y, budget in points:
                ax.annotate(str(budget), (x, y), textcoords="offset points", xytext=(4, 4),
                            fontsize=7)  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("inference FLOPs per prompt" if use_flops else "calls per prompt")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    figure.suptitle("TOA and the simple strategies at equal compute (labels: budget)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _best_agents(plt: Any, cells: Sequence[Mapping[str, Any]], path: Path) -> Path:
    strategies = list(dict.fromkeys(str(cell["strategy"]) for cell in cells))
    agents = sorted({a for cell in cells for a in (cell.get("best_agent_share") or {})})
    figure, axes = plt.subplots(
        1, len(strategies), figsize=(3.2 * len(strategies) + 1.5, 3.8), squeeze=False
    )
    for ax, strategy in zip(axes[0], strategies, strict=True):
        mine = sorted(
            (c for c in cells if c["strategy"] == strategy), key=lambda c: int(c["budget"])
        )
        labels = [str(c["budget"]) for c in mine]
        bottoms = [0.0] * len(mine)
        for agent in agents:
            shares = [float((c.get("best_agent_share") or {}).get(agent, 0.0)) for c in mine]
            ax.bar(labels, shares, bottom=bottoms, label=agent)
            bottoms = [b + s for b, s in zip(bottoms, shares, strict=True)]
        ax.set_title(strategy)
        ax.set_xlabel("budget")
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("share of the best answers")
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
