"""`export_run`: a run directory's finished prompts to an SFT or DPO dataset file or directory.

The run's store (``store.sqlite``) is the source of truth, read through `StoreReader`, which is
safe while a run is writing it: results stream in the order they finished, so a run that is still
going or was interrupted exports the prompts finished so far, and the report says how many are
unfinished. Each prompt's rows are made from its stored search tree (the result line gives the
conversation); a store written by an older TOA release holds no trees, and its result lines'
``samples`` are read instead. ``results.jsonl`` is not read (the engine rebuilds it from the
store).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from toa.errors import ExportError
from toa.export.card import card_path, render_card
from toa.export.dpo import DPOOptions, dpo_columns, to_dpo_pairs
from toa.export.records import Column, Converted
from toa.export.report import ExportFormat, ExportReport, Tally
from toa.export.sft import SFTOptions, sft_columns, to_sft_rows
from toa.export.writers import RowWriter, check_output, writing
from toa.search.tree import SearchTree
from toa.store.layout import STORE_NAME
from toa.store.manifest import read_manifest
from toa.store.run_store import RunStore

__all__ = ["export_run"]

logger = logging.getLogger(__name__)

_Convert = Callable[[Mapping[str, Any], SearchTree | None], Converted]


def _plan(
    format: ExportFormat, options: SFTOptions | DPOOptions | None
) -> tuple[SFTOptions | DPOOptions, tuple[Column, ...], _Convert]:
    """The options (defaults filled in), the columns and the converter for `format`."""
    if format == "sft":
        sft = SFTOptions() if options is None else options
        if not isinstance(sft, SFTOptions):
            raise ExportError("format 'sft' takes SFTOptions, not DPOOptions")
        return sft, sft_columns(sft), lambda result, tree: to_sft_rows(result, sft, tree)
    if format == "dpo":
        dpo = DPOOptions() if options is None else options
        if not isinstance(dpo, DPOOptions):
            raise ExportError("format 'dpo' takes DPOOptions, not SFTOptions")
        return dpo, dpo_columns(), lambda result, tree: to_dpo_pairs(result, dpo, tree)
    raise ExportError(f"format must be sft or dpo, got {format!r}")


def _parse(line: str) -> Mapping[str, Any] | None:
    try:
        result = json.loads(line)
    except ValueError:
        return None
    return result if isinstance(result, dict) else None


def _export_line(
    tally: Tally,
    writer: RowWriter,
    convert: _Convert,
    stored: tuple[str, str, str, dict[str, Any] | None],
) -> None:
    """Convert one stored result (and its tree) and write its rows, counting what happened."""
    prompt_id, status, line, tree_data = stored
    if tally.already_exported(prompt_id):
        return
    if status != "done":
        tally.add(prompt_id, Converted(skip="failed_search"))
        return
    result = _parse(line)
    if result is None:
        logger.warning("prompt %r: its stored result is not a JSON object; left out", prompt_id)
        tally.left_out_reason(prompt_id, "bad_result")
        return
    try:
        tree = SearchTree.from_dict(tree_data) if tree_data is not None else None
    except (KeyError, TypeError, ValueError) as exc:
        logger.warning("prompt %r: its stored tree cannot be read (%s); left out", prompt_id, exc)
        tally.left_out_reason(prompt_id, "bad_result")
        return
    converted = convert(result, tree)
    tally.add(prompt_id, converted)
    for row in converted.rows:
        writer.write(row)


def export_run(
    run_dir: str | os.PathLike[str],
    *,
    format: ExportFormat,
    out: str | os.PathLike[str],
    options: SFTOptions | DPOOptions | None = None,
    card: bool | None = None,
) -> ExportReport:
    """Export the finished prompts of `run_dir` as SFT rows or DPO pairs to `out`.

    Args:
        run_dir: a run directory made by `toa run` (finished, running or interrupted).
        format: 'sft' or 'dpo'.
        out: a ``.jsonl`` or ``.parquet`` file, or a directory (`datasets` save_to_disk).
            Replaced atomically when it exists (a directory only if it is empty or a dataset).
        options: `SFTOptions` for 'sft', `DPOOptions` for 'dpo'; None: the defaults.
        card: write the dataset card (README.md inside a directory; ``OUT.card.md`` beside a
            file). None: for directories only.

    Returns:
        What was written, what was left out and why, and reward statistics.

    Raises:
        ConfigError: `run_dir` has no readable manifest (not a run directory).
        StoreError: the run's store is missing or unreadable.
        ExportError: bad options, a bad OUT path, or the optional library for OUT is missing.
    """
    run_path, out_path = Path(run_dir), Path(out)
    chosen, columns, convert = _plan(format, options)
    manifest = read_manifest(run_path)
    directory = check_output(out_path) == "datasets"
    tally = Tally(format)
    with RunStore.open_readonly(run_path / STORE_NAME) as store:
        with writing(out_path, columns) as writer:
            for stored in store.iter_results_with_trees():
                _export_line(tally, writer, convert, stored)
        unfinished = store.summary().prompts_partial
    write_card = directory if card is None else card
    card_file = card_path(out_path, directory=directory) if write_card else None
    report = tally.report(run_dir=run_path, out=out_path, unfinished=unfinished, card=card_file)
    if card_file is not None:
        text = render_card(manifest, report, chosen, [name for name, _ in columns])
        card_file.write_text(text, encoding="utf-8")
    logger.info("exported %d %s rows to %s", report.rows, format, out_path)
    return report
