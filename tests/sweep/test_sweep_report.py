"""`toa report SWEEP_DIR`: the verdict, the plots and the cells on one page, each cell's report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from toa.cli import app
from toa.testing import running_in_thread

pytest.importorskip("matplotlib")


def test_a_sweep_report_has_the_verdict_plots_and_linked_cell_reports(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"p{i}", "prompt": f"Question {i}?"}) + "\n" for i in range(6)),
        encoding="utf-8",
    )
    runner = CliRunner()
    with running_in_thread() as server:
        config = tmp_path / "config.yaml"
        agents = "".join(
            f"  - {{name: {a}, model: {a}, base_url: '{server.base_url}', params_b: 1.0}}\n"
            for a in ("agent_a", "agent_b")
        )
        config.write_text(
            f"agents:\n{agents}reward: {{type: simulated}}\nstrategy: {{name: toa, budget: 2}}\n",
            encoding="utf-8",
        )
        sweep = tmp_path / "sweep"
        done = runner.invoke(
            app,
            ["sweep", "-c", str(config), "-i", str(prompts), "-o", str(sweep),
             "--strategies", "toa,ensemble", "--budgets", "2,4"],
            env={"COLUMNS": "200"},
        )  # fmt: skip
        assert done.exit_code == 0, done.output
    # one view of the whole sweep: a line before each cell, the cell's own progress lines within
    assert "sweep: cell toa b2 (1/4) | 0 of 4 cells done" in done.output
    assert "sweep: cell ensemble b4 (4/4) | 3 of 4 cells done" in done.output
    assert "ETA ~" in done.output
    assert (sweep / "scaling.png").is_file()
    report = runner.invoke(app, ["report", str(sweep)], env={"COLUMNS": "200"})
    assert report.exit_code == 0, report.output
    page = (sweep / "report.html").read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == 2
    assert re.search(r"<li>budget 2: toa [\d.]+ vs ensemble", page), page[:2000]
    links = re.findall(r'<a href="([^"]+)">(\w+-b\d+)</a>', page)
    assert sorted(name for _, name in links) == ["ensemble-b2", "ensemble-b4", "toa-b2", "toa-b4"]
    for href, _ in links:
        cell_page = (sweep / href).read_text(encoding="utf-8")
        assert 'id="toa-data"' in cell_page
    assert "<script" not in page  # the sweep page needs no script
    missing = runner.invoke(app, ["report", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2
