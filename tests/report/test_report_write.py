"""`write_report` and `toa report`: what the page holds, where it goes, what it refuses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from report_helpers import HOSTILE
from typer.testing import CliRunner

from toa.cli import app
from toa.errors import ConfigError, ExportError, StoreError
from toa.report import Gather, histogram, write_report
from toa.report.page import data_json
from toa.report.writer import REPORT_NAME
from toa.store.layout import MANIFEST_NAME, STORE_NAME

ENV = {"COLUMNS": "1000", "NO_COLOR": "1"}  # one line, however long the tmp path


def page_data(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    found = re.search(r'<script type="application/json" id="toa-data">(.*?)</script>', text, re.S)
    assert found is not None
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def fact(text: str, key: str) -> str:
    found = re.search(rf'data-key="{re.escape(key)}"><span>[^<]*</span><b[^>]*>([^<]*)</b>', text)
    assert found is not None, key
    return found.group(1)


def test_the_report_holds_the_summary_and_every_prompt(run_dir: Path) -> None:
    out = write_report(run_dir)
    assert out == run_dir / REPORT_NAME
    text = out.read_text(encoding="utf-8")
    results = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    manifest = json.loads((run_dir / MANIFEST_NAME).read_text())
    calls = sum(r["compute"]["calls"] for r in results)
    failed_calls = sum(r["compute"]["failed_calls"] for r in results)
    assert fact(text, "prompts done") == str(len(results))
    assert fact(text, "calls") == f"{calls:,}"
    assert fact(text, "failed calls") == str(failed_calls) != "0"
    assert fact(text, "strategy") == "toa"
    assert fact(text, "budget") == "6"
    assert manifest["config_hash"][:12] == fact(text, "config hash")
    assert "best answers by agent" in text
    assert "compute by agent" in text
    assert text.count("<svg") == 2
    page = re.sub(r'id="toa-data">.*?</script>', "", text, flags=re.S)
    assert "http:" not in page
    assert "https:" not in page
    assert " src=" not in page
    data = page_data(out)
    assert [p[0] for p in data["prompts"]] == [r["id"] for r in results]
    by_id = {p[0]: p for p in data["prompts"]}
    for r in results:
        record = by_id[r["id"]]
        assert record[3] == r["best"]["node"]
        nodes = {n[0]: n for n in record[7]}
        assert set(nodes) == {s["node"] for s in r["samples"]}
        for s in r["samples"]:
            node = nodes[s["node"]]
            assert node[1] == (s["parent"] if s["parent"] is not None else -1)
            assert data["agents"][node[3]] == s["agent"]
            failed = "error" in s
            assert (len(node) > 7 and node[7] is not None) == failed
            if not failed:
                assert node[6] == s["response"]
    assert sum(p[5] for p in data["prompts"]) == failed_calls


def test_untrusted_text_cannot_leave_the_data_block(run_dir: Path, tmp_path: Path) -> None:
    out = write_report(run_dir, tmp_path / "r.html")
    text = out.read_text(encoding="utf-8")
    assert HOSTILE not in text
    assert text.count("</script>") == 2  # the data block's and the script's own
    assert "<!--" not in text
    assert any(p[1] == HOSTILE for p in page_data(out)["prompts"])  # the same text, decoded
    assert json.loads(data_json("a</b><!--c")) == "a</b><!--c"


def test_without_trees_the_result_lines_samples_are_drawn() -> None:
    samples = [
        {"node": 4, "parent": None, "parents": [], "depth": 1, "agent": "a", "action": "fresh",
         "response": "one", "reward": 0.2, "usage": {"prompt_tokens": 3, "completion_tokens": 5}},
        {"node": 6, "parent": 4, "parents": [4], "depth": 2, "agent": "b", "action": "refine",
         "response": "two", "reward": 0.9, "usage": None},
        {"node": 8, "parent": 4, "parents": [4], "depth": 2, "agent": "a", "action": "refine",
         "response": None, "reward": None, "usage": None, "error": "ServerError: 500"},
    ]  # fmt: skip
    gather = Gather()
    record = gather.add("p", "done", {"prompt": "q?", "samples": samples}, None)
    assert record[:6] == ["p", "q?", "done", 6, 0.9, 1]
    assert record[7][1] == [6, 4, 2, 1, 1, 0.9, "two"]
    assert record[7][2] == [8, 4, 2, 0, 1, None, None, "ServerError: 500"]
    assert (
        gather.best_by_agent["b"],
        gather.best_by_depth[2],
        gather.best_by_action["refine"],
    ) == (
        1,
        1,
        1,
    )
    assert sorted(gather.all_rewards) == [0.2, 0.9]
    failed = gather.add("f", "failed", {"prompt": "x", "error": "Boom: no", "samples": []}, None)
    assert failed == ["f", "x", "failed", -1, None, 0, "Boom: no", []]
    assert (gather.done, gather.failed) == (1, 1)


def test_histogram() -> None:
    assert histogram([]) is None
    assert histogram([0.5, 0.5]) is not None
    hist = histogram([0.0, 0.1, 0.5, 1.0, float("nan")], bins=4)
    assert hist is not None
    assert (hist.low, hist.high, hist.counts) == (0.0, 1.0, (2, 0, 1, 1))


def test_refusals(run_dir: Path, tmp_path: Path) -> None:
    for own in (STORE_NAME, "results.jsonl", MANIFEST_NAME):
        before = (run_dir / own).read_bytes()
        with pytest.raises(ExportError, match="run's own files"):
            write_report(run_dir, run_dir / own)
        assert (run_dir / own).read_bytes() == before
    with pytest.raises(ExportError, match="is a directory"):
        write_report(run_dir, tmp_path)
    with pytest.raises(ExportError, match="does not exist"):
        write_report(run_dir, tmp_path / "missing" / "r.html")
    with pytest.raises(ConfigError, match="not a TOA run directory"):
        write_report(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / MANIFEST_NAME).write_text((run_dir / MANIFEST_NAME).read_text())
    with pytest.raises(StoreError):
        write_report(broken)
    (broken / STORE_NAME).write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError):
        write_report(broken)
    assert not (broken / REPORT_NAME).exists()


def test_cli(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "page.html"
    done = CliRunner().invoke(app, ["report", str(run_dir), "-o", str(out)], env=ENV)
    assert done.exit_code == 0, done.output
    assert f"wrote {out}" in done.output
    assert out.is_file()
    no_store = tmp_path / "no-store"
    no_store.mkdir()
    (no_store / MANIFEST_NAME).write_text((run_dir / MANIFEST_NAME).read_text())
    for bad in (tmp_path / "nothing", no_store):
        bad.mkdir(exist_ok=True)
        refused = CliRunner().invoke(app, ["report", str(bad)], env=ENV)
        assert refused.exit_code == 2
        assert refused.output.startswith("error: ")
        assert len(refused.output.strip().splitlines()) == 1, refused.output
        assert "Traceback" not in refused.output
    store = CliRunner().invoke(app, ["report", str(run_dir), "-o", str(run_dir / STORE_NAME)])
    assert store.exit_code == 2


def test_a_big_run_makes_a_file_about_the_size_of_its_text(
    big_run: tuple[Path, int], tmp_path: Path
) -> None:
    """2,000 prompts x 16 responses of 300 characters: no per-node HTML, compact JSON."""
    run, chars = big_run
    out = write_report(run, tmp_path / "big.html")
    size = out.stat().st_size
    assert size < 1.5 * chars, (size, chars)
    data = page_data(out)
    assert len(data["prompts"]) == 2000
    assert all(len(p[7]) == 16 for p in data["prompts"])
