"""`toa report SWEEP_DIR`: a sweep as one self-contained HTML page, the plots and the cells first.

The page (``SWEEP_DIR/report.html`` by default) holds the verdict at each budget (TOA against the
best other strategy, `compare_line`), the plots (`toa.sweep.plots`, embedded as data URIs; drawn
again when missing and matplotlib is there), and the table of cells: rewards, eval score, calls
sent and answered from the cache, tokens, FLOPs, cost, each linking to the cell's own report
(``cells/<cell>/report.html``, written too by `toa.report.write_report`). No script, no network.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from toa.errors import ConfigError, ExportError, TOAError
from toa.report import write_report
from toa.report.page import PAGE_STYLE
from toa.report.writer import REPORT_NAME
from toa.sweep.driver import SWEEP_JSON, compare_line
from toa.sweep.plots import BEST_AGENTS_PNG, SCALING_PNG, plot_sweep

__all__ = ["is_sweep_dir", "write_sweep_report"]

logger = logging.getLogger(__name__)


def is_sweep_dir(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a sweep directory (it holds ``sweep.json``)."""
    return (Path(path) / SWEEP_JSON).is_file()


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: object, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) >= 1e5 else f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _eval_cell(cell: Mapping[str, Any]) -> str:
    block = cell.get("eval")
    if not isinstance(block, Mapping):
        return "-"
    value = block.get("accuracy")
    return _num(value if value is not None else block.get("mean_best"))


def _table(cells: Sequence[Mapping[str, Any]], links: Mapping[str, str]) -> str:
    header = [
        "cell", "prompts", "mean best", "mean top-k", "eval", "calls sent", "from cache",
        "tokens", "FLOPs", "cost", "wall",
    ]  # fmt: skip
    rows = []
    for cell in cells:
        name = _e(cell["name"])
        link = links.get(str(cell["name"]))
        label = f'<a href="{_e(link)}">{name}</a>' if link else name
        tokens = (cell.get("prompt_tokens") or 0) + (cell.get("completion_tokens") or 0)
        values = [
            cell.get("prompts"), cell.get("mean_best_reward"), cell.get("mean_topk_reward"),
        ]  # fmt: skip
        cols = [label, *(_e(_num(v)) for v in values), _e(_eval_cell(cell))]
        cols += [_e(_num(cell.get(k))) for k in ("calls_sent", "cached_calls")]
        cols += [
            _e(_num(tokens)),
            _e(_num(cell.get("flops"))),
            _e(f"${cell.get('cost_usd') or 0:.4f}"),
            _e("-" if cell.get("wall_s") is None else f"{float(cell['wall_s']):.1f} s"),
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cols) + "</tr>")
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{_e(alt)}" src="data:image/png;base64,{data}"></figure>'


def _plots(document: Mapping[str, Any], sweep_dir: Path) -> list[Path]:
    wanted = [sweep_dir / SCALING_PNG, sweep_dir / BEST_AGENTS_PNG]
    if not all(p.is_file() for p in wanted):
        try:
            plot_sweep(document, sweep_dir)
        except ConfigError as exc:
            logger.warning("the report has no plots: %s", exc)
    return [p for p in wanted if p.is_file()]


def _cell_reports(document: Mapping[str, Any], sweep_dir: Path, out_dir: Path) -> dict[str, str]:
    """Each cell's own report, written in its run directory; relative links from `out_dir`."""
    links: dict[str, str] = {}
    for cell in document.get("cells", []):
        run_dir = sweep_dir / str(cell["run_dir"])
        try:
            path = write_report(run_dir)
        except TOAError as exc:  # the sweep page still says what it can
            logger.warning("cell %s: no report (%s)", cell["name"], exc)
            continue
        links[str(cell["name"])] = Path(os.path.relpath(path, out_dir)).as_posix()
    return links


def write_sweep_report(
    sweep_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None
) -> Path:
    """Write the HTML page of a sweep (module docstring) and every cell's report; the page's path.

    Raises:
        ConfigError: `sweep_dir` has no readable sweep.json.
        ExportError: the page cannot be written (its folder is missing, it is a directory).
    """
    root = Path(sweep_dir)
    try:
        document = json.loads((root / SWEEP_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{root / SWEEP_JSON}: not a readable sweep ({exc})") from exc
    out_path = Path(out) if out is not None else root / REPORT_NAME
    if not out_path.parent.is_dir() or out_path.is_dir():
        raise ExportError(f"{out_path}: choose a file in an existing folder")
    cells = list(document.get("cells", []))
    links = _cell_reports(document, root, out_path.parent)
    title = _e(f"TOA sweep: {root.resolve().name}")
    verdicts = "".join(f"<li>{_e(line)}</li>" for line in compare_line(cells))
    figures = "".join(_image(p, p.stem.replace("_", " ")) for p in _plots(document, root))
    strategies = ", ".join(document.get("strategies", []))
    budgets = ", ".join(str(b) for b in document.get("budgets", []))
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">"
        f"<title>{title}</title><style>{PAGE_STYLE}"
        "figure img{max-width:100%;height:auto}</style></head><body>"
        f"<h1>{title}</h1>"
        f"<p>strategies {_e(strategies)}; budgets {_e(budgets)}; "
        f"eval {_e(document.get('eval') or 'none')}; single agent "
        f"{_e(document.get('single_agent') or '-')}</p>"
        f'<section id="verdict"><h2>At equal budget</h2><ul>{verdicts or "<li>-</li>"}</ul>'
        "<p>Compare the plot's lines at equal FLOPs too: a budget counts calls, and TOA's calls "
        "carry longer prompts.</p></section>"
        f'<section id="plots"><h2>Plots</h2>{figures or "<p>no plots (matplotlib)</p>"}</section>'
        f'<section id="cells"><h2>Cells</h2>{_table(cells, links)}</section>'
        "</body></html>\n"
    )
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, out_path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ExportError(f"{out_path}: cannot write the report ({exc})") from exc
    return out_path
