"""The sweep's pictures: drawn from sweep.json's cells, PNG files, FLOPs or calls on the x axis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from toa.sweep.plots import BEST_AGENTS_PNG, SCALING_PNG, plot_sweep

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


def _cell(strategy: str, budget: int, reward: float, *, flops: float | None) -> dict[str, Any]:
    return {
        "strategy": strategy,
        "budget": budget,
        "prompts": 10,
        "calls": 10 * budget,
        "flops": flops,
        "mean_best_reward": reward,
        "best_agent_share": {"a": 0.75, "b": 0.25} if strategy == "toa" else {"a": 1.0},
        "eval": {"kind": "verify", "accuracy": reward / 2},
    }


def test_plots_are_written_for_every_strategy(tmp_path: Path) -> None:
    cells = [
        _cell(s, b, 0.5 + 0.01 * b + (0.1 if s == "toa" else 0.0), flops=1e12 * b)
        for b in (4, 8)
        for s in ("toa", "random")
    ]
    paths = plot_sweep({"eval": "verify", "cells": cells}, tmp_path / "out")
    assert [p.name for p in paths] == [SCALING_PNG, BEST_AGENTS_PNG]
    for path in paths:
        assert path.read_bytes()[:8] == PNG
        assert path.stat().st_size > 5_000


def test_cells_without_flops_are_drawn_against_calls(tmp_path: Path) -> None:
    cells = [_cell("toa", b, 0.5, flops=None) for b in (4, 8)]
    assert plot_sweep({"cells": cells}, tmp_path)[0].read_bytes()[:8] == PNG
    assert plot_sweep({"cells": []}, tmp_path / "none") == []
