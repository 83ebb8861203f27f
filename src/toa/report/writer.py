"""`write_report`: a run directory to one self-contained HTML file a person reads in a minute.

The run's store is read read-only (safe while the run goes on) in one streamed pass: each prompt's
compact record goes to a temporary file while the summary is summed, then the page is written
(summary, one JSON data block, the script) beside OUT and renamed over it, so a reader never sees
half a report and memory does not grow with the run's text.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from toa.errors import ExportError
from toa.report.data import Gather
from toa.report.page import PAGE_SCRIPT, PAGE_STYLE, data_json, script_safe, summary_html
from toa.store.layout import MANIFEST_NAME, RUN_FILES, STORE_NAME
from toa.store.manifest import read_manifest
from toa.store.run_store import RunStore

__all__ = ["REPORT_NAME", "write_report"]

logger = logging.getLogger(__name__)

REPORT_NAME = "report.html"
"""The report's default name, inside the run directory."""


def _check_output(out: Path) -> None:
    if not out.parent.is_dir():
        raise ExportError(f"{out}: the folder {out.parent} does not exist; create it first")
    if out.name in RUN_FILES and (out.parent / MANIFEST_NAME).is_file():
        raise ExportError(
            f"{out}: is one of the run's own files ({out.parent} is a run directory); "
            "write the report somewhere else"
        )
    if out.is_dir():
        raise ExportError(f"{out}: is a directory; choose a file path such as {REPORT_NAME}")


def _parse(prompt_id: str, line: str) -> Mapping[str, Any]:
    try:
        result = json.loads(line)
    except ValueError:
        result = None
    if not isinstance(result, dict):
        logger.warning("prompt %r: its stored result is not a JSON object", prompt_id)
        return {}
    return result


def _gather(run_dir: Path, records: IO[str]) -> tuple[Gather, int]:
    """Write every prompt's record to `records` (comma-separated); the sums and the number of
    unfinished prompts."""
    gather = Gather()
    seen: set[str] = set()
    with RunStore.open_readonly(run_dir / STORE_NAME) as store:
        for prompt_id, status, line, tree in store.iter_results_with_trees():
            if prompt_id in seen:  # rewritten while we read: the first one is kept
                continue
            seen.add(prompt_id)
            record = gather.add(prompt_id, status, _parse(prompt_id, line), tree)
            records.write(("," if len(seen) > 1 else "") + data_json(record))
        unfinished = store.summary().prompts_partial
    return gather, unfinished


def _page_head(title: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        f"<title>{title}</title><style>{PAGE_STYLE}</style></head><body>"
    )


def _prompts_section() -> str:
    return (
        '<section id="prompts"><h2>Prompts</h2><div id="controls">'
        '<input id="search" type="search" placeholder="search prompt ids and text" '
        'aria-label="search prompts"><button id="prev">&larr; prev</button>'
        '<span id="page-info"></span><button id="next">next &rarr;</button></div>'
        '<div id="prompt-list"></div><noscript>The prompt list needs JavaScript.</noscript>'
        "</section>"
    )


def write_report(
    run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None
) -> Path:
    """Write the HTML report of `run_dir` to `out` (default: RUN_DIR/report.html).

    Args:
        run_dir: a run directory made by `toa run` (finished, running or interrupted).
        out: the HTML file to write; replaced atomically when it exists.

    Returns:
        The path written.

    Raises:
        ConfigError: `run_dir` has no readable manifest (not a run directory).
        StoreError: the run's store is missing or unreadable.
        ExportError: OUT's folder is missing, OUT is a directory or one of the run's own files, or
            OUT cannot be written.
    """
    run_path = Path(run_dir)
    out_path = Path(out) if out is not None else run_path / REPORT_NAME
    manifest = read_manifest(run_path)
    _check_output(out_path)
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as records:
        gather, unfinished = _gather(run_path, records)
        records.seek(0)
        title = html.escape(f"TOA report: {run_path.resolve().name}")
        tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("w", encoding="utf-8", errors="replace") as f:
                f.write(_page_head(title))
                f.write(f"<h1>{title}</h1>")
                f.write(summary_html(gather, manifest, unfinished=unfinished))
                f.write(_prompts_section())
                agents = script_safe(json.dumps(gather.agents, ensure_ascii=False))
                f.write(f'<script type="application/json" id="toa-data">{{"agents":{agents},')
                f.write('"prompts":[')
                shutil.copyfileobj(records, f)
                f.write("]}</script>")
                f.write(f"<script>{PAGE_SCRIPT}</script></body></html>\n")
            os.replace(tmp, out_path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise ExportError(f"{out_path}: cannot write the report ({exc})") from exc
    logger.info("wrote the report of %d prompts to %s", gather.done + gather.failed, out_path)
    return out_path
