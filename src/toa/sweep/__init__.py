"""Sweeps: one configuration over a grid of strategies x budgets on the same prompts.

Each (strategy, budget) cell is a normal run directory (``SWEEP_DIR/cells/<strategy>-b<budget>``)
made by the engine, every cell sharing one generation cache (``SWEEP_DIR/generations.sqlite``),
so a request two cells share is paid once and a rerun sends nothing. `prepare_sweep` makes every
check before any call, `run_sweep` runs the cells cheapest first and writes ``sweep.json`` and
``sweep.csv``; `toa.sweep.evaluate` scores the chosen answers apart from the reward
(``toa sweep --eval``, ``toa eval``).
"""

from __future__ import annotations

from toa.sweep.driver import (
    SWEEP_CSV,
    SWEEP_JSON,
    PreparedSweep,
    SweepReport,
    calibration_choice,
    compare_line,
    prepare_sweep,
    run_sweep,
    sweep_csv,
    sweep_document,
    write_outputs,
)
from toa.sweep.evaluate import (
    EVAL_FIELDS,
    EVAL_KINDS,
    EVAL_NAME,
    check_eval_fields,
    check_eval_kind,
    evaluate_rows,
    evaluate_run,
)
from toa.sweep.plan import (
    CACHE_NAME,
    CALIBRATION_DIR,
    CELLS_DIR,
    INPUTS_DIR,
    SWEEP_MANIFEST,
    Cell,
    SweepPlan,
    parse_budgets,
    parse_strategies,
    resolve_single_agent,
)
from toa.sweep.summary import TOP_K, read_results, summarize_cell

__all__ = [
    "CACHE_NAME",
    "CALIBRATION_DIR",
    "CELLS_DIR",
    "EVAL_FIELDS",
    "EVAL_KINDS",
    "EVAL_NAME",
    "INPUTS_DIR",
    "SWEEP_CSV",
    "SWEEP_JSON",
    "SWEEP_MANIFEST",
    "TOP_K",
    "Cell",
    "PreparedSweep",
    "SweepPlan",
    "SweepReport",
    "calibration_choice",
    "check_eval_fields",
    "check_eval_kind",
    "compare_line",
    "evaluate_rows",
    "evaluate_run",
    "parse_budgets",
    "parse_strategies",
    "prepare_sweep",
    "read_results",
    "resolve_single_agent",
    "run_sweep",
    "summarize_cell",
    "sweep_csv",
    "sweep_document",
    "write_outputs",
]
