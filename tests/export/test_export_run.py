"""`export_run` end to end: engine-made and hand-made run directories, every output kind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from export_helpers import (
    handmade_run,
    read_jsonl,
    result,
    run_engine,
    sample,
    write_prompts,
)

from toa.errors import ConfigError, StoreError
from toa.export import DPOOptions, ExportError, SFTOptions, export_run
from toa.export.records import Converted
from toa.export.report import Tally
from toa.store.run_store import RunStore
from toa.testing import FakeServer


def store_results(run_dir: Path) -> dict[str, dict[str, Any]]:
    with RunStore.open_readonly(run_dir / "store.sqlite") as store:
        return {pid: json.loads(line) for pid, _, line in store.iter_results()}


def best_reward(line: dict[str, Any]) -> float:
    return max(float(s["reward"]) for s in line["samples"] if s.get("reward") is not None)


@pytest.mark.parametrize("name", ["out.jsonl", "out.parquet", "out_dir"])
@pytest.mark.parametrize("format", ["sft", "dpo"])
def test_engine_run_exports_to_every_output_kind(
    engine_run_dir: Path, tmp_path: Path, format: Any, name: str
) -> None:
    if name != "out.jsonl":
        pytest.importorskip("pyarrow")
    if name == "out_dir":
        pytest.importorskip("datasets")
    out = tmp_path / name
    report = export_run(engine_run_dir, format=format, out=out)
    reference = export_run(engine_run_dir, format=format, out=tmp_path / "reference.jsonl")
    assert report.prompts_read == 6
    assert report.prompts_exported == 6
    assert report.rows == 6
    assert not report.left_out
    assert read_back(out) == read_jsonl(tmp_path / "reference.jsonl")
    assert reference.rows == report.rows
    assert (report.card is not None) == (name == "out_dir")


def read_back(out: Path) -> list[dict[str, Any]]:
    if out.suffix == ".jsonl":
        return read_jsonl(out)
    if out.suffix == ".parquet":
        pq = pytest.importorskip("pyarrow.parquet")
        rows: list[dict[str, Any]] = pq.read_table(out).to_pylist()
        return rows
    datasets = pytest.importorskip("datasets")
    dataset = datasets.load_from_disk(str(out))
    assert dataset.features["chosen" if "chosen" in dataset.features else "messages"]
    listed: list[dict[str, Any]] = dataset.to_list()
    return listed


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.parquet", "empty_dir"])
def test_an_empty_export_still_has_its_columns(
    engine_run_dir: Path, tmp_path: Path, name: str
) -> None:
    if name != "empty.jsonl":
        pytest.importorskip("pyarrow")
    options = DPOOptions(min_reward=1e9)
    report = export_run(engine_run_dir, format="dpo", out=tmp_path / name, options=options)
    assert report.rows == 0
    assert report.left_out == {"below_min_reward": 6}
    assert report.rewards == {}
    assert read_back(tmp_path / name) == []
    if name == "empty.parquet":
        pq = pytest.importorskip("pyarrow.parquet")
        assert pq.read_schema(tmp_path / name).names[:3] == ["prompt", "chosen", "rejected"]
    if name == "empty_dir":
        datasets = pytest.importorskip("datasets")
        assert "chosen" in datasets.load_from_disk(str(tmp_path / name)).features


def test_sft_export_takes_each_prompts_best_reward(engine_run_dir: Path, tmp_path: Path) -> None:
    report = export_run(engine_run_dir, format="sft", out=tmp_path / "sft.jsonl")
    lines = store_results(engine_run_dir)
    rows = read_jsonl(tmp_path / "sft.jsonl")
    assert sorted(r["id"] for r in rows) == sorted(lines)
    for row in rows:
        assert row["reward"] == best_reward(lines[row["id"]])
        assert row["strategy"] == "toa"
    assert report.rewards["best"].max == max(r["reward"] for r in rows)


def test_dpo_export_reports_reward_statistics_and_length_ratio(
    engine_run_dir: Path, tmp_path: Path
) -> None:
    options = DPOOptions(rejected_rank=3, pairs_per_prompt=2, min_margin=0.01)
    report = export_run(engine_run_dir, format="dpo", out=tmp_path / "dpo.jsonl", options=options)
    rows = read_jsonl(tmp_path / "dpo.jsonl")
    assert report.rows == len(rows) > 6
    chosen, rejected = report.rewards["chosen"], report.rewards["rejected"]
    assert chosen.count == rejected.count == len(rows)
    assert chosen.min > rejected.min
    assert chosen.mean == pytest.approx(sum(r["chosen_reward"] for r in rows) / len(rows))
    assert rejected.min <= rejected.p25 <= rejected.median <= rejected.p75 <= rejected.max
    assert report.mean_length_ratio is not None
    assert report.mean_length_ratio > 0
    assert all(r["rejected_rank"] >= 3 for r in rows)


def test_directory_export_has_a_dataset_card(engine_run_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    out = tmp_path / "dpo_set"
    report = export_run(engine_run_dir, format="dpo", out=out)
    card = (out / "README.md").read_text(encoding="utf-8")
    manifest = json.loads((engine_run_dir / "manifest.json").read_text(encoding="utf-8"))
    assert report.card == out / "README.md"
    assert card.startswith("---\ntags: [toa, synthetic, dpo]")
    for fact in (manifest["config_hash"], "| strategy | toa |", "8 generations per prompt"):
        assert fact in card
    assert "agent_a (agent_a), agent_b (agent_b), agent_c (agent_c)" in card
    assert "| reward | simulated |" in card
    assert "| chosen | 6 |" in card
    assert "| rejected | 6 |" in card
    assert 'load_from_disk("dpo_set")' in card


def test_file_export_writes_a_card_beside_it_when_asked(
    engine_run_dir: Path, tmp_path: Path
) -> None:
    report = export_run(engine_run_dir, format="sft", out=tmp_path / "s.jsonl", card=True)
    assert report.card == tmp_path / "s.jsonl.card.md"
    text = report.card.read_text(encoding="utf-8")
    assert "| best | 6 |" in text
    assert "`messages`" in text


def test_interrupted_run_exports_finished_prompts_and_counts_the_rest(tmp_path: Path) -> None:
    lines = [
        result([sample(1, 0.9), sample(2, 0.1)], id="done-1"),
        result([sample(1, 0.4), sample(2, 0.3)], id="done-2"),
        result([], id="crashed", status="failed"),
        result([sample(1, None, reward_error="x")], id="unscored"),
    ]
    run_dir = handmade_run(
        tmp_path / "run", lines, partial=["half-1", "half-2"], raw=[("junk", "done", "{oops")]
    )
    report = export_run(run_dir, format="dpo", out=tmp_path / "d.jsonl")
    assert [r["id"] for r in read_jsonl(tmp_path / "d.jsonl")] == ["done-1", "done-2"]
    assert report.prompts_read == 5
    assert report.left_out == {
        "failed_search": 1,
        "no_scored_response": 1,
        "bad_result": 1,
        "unfinished": 2,
    }
    assert report.left_out_total == 5
    assert report.samples_dropped == {"unscored": 1}
    text = "\n".join(report.lines())
    assert "left out, unfinished: 2 (prompts with calls but no result yet" in text
    assert "wrote 2 DPO rows" in text


async def test_export_while_the_engine_runs_then_after_it_is_interrupted(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 12)
    run_dir = tmp_path / "run"
    async with FakeServer(seed=2, latency_ms=15) as server:
        task = asyncio.create_task(
            run_engine(run_dir, prompts, server, budget=6, runner={"prompts_in_flight": 2})
        )
        await until_results(run_dir, at_least=3)
        live = await asyncio.to_thread(
            export_run, run_dir, format="sft", out=tmp_path / "live.jsonl"
        )
        task.cancel()  # as Ctrl-C does: in-flight prompts stay unfinished
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert 3 <= live.rows == live.prompts_exported == live.prompts_read < 12
    stored = store_results(run_dir)
    assert all(stored[r["id"]]["status"] == "done" for r in read_jsonl(tmp_path / "live.jsonl"))

    after = export_run(run_dir, format="sft", out=tmp_path / "after.jsonl")
    with RunStore.open_readonly(run_dir / "store.sqlite") as store:
        summary = store.summary()
    assert after.rows == summary.prompts_done < 12
    assert after.left_out.get("unfinished", 0) == summary.prompts_partial


async def until_results(run_dir: Path, *, at_least: int, timeout_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if (run_dir / "store.sqlite").exists():
            with RunStore.open_readonly(run_dir / "store.sqlite") as store:
                if store.summary().prompts_done >= at_least:
                    return
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {at_least} results after {timeout_s} s")


def test_a_prompt_redone_while_exporting_counts_once() -> None:
    tally = Tally("sft")
    tally.add("p", Converted(skip="failed_search"))
    tally.add("p", Converted(rows=[{"reward": 1.0}]))
    assert tally.already_exported("p")
    report = tally.report(run_dir=Path("r"), out=Path("o"), unfinished=0, card=None)
    assert (report.prompts_read, report.prompts_exported, report.left_out) == (1, 1, {})


def test_existing_outputs_are_replaced_but_foreign_directories_are_not(
    engine_run_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("datasets")
    out_file = tmp_path / "o.jsonl"
    out_file.write_text("old\n", encoding="utf-8")
    export_run(engine_run_dir, format="sft", out=out_file)
    assert len(read_jsonl(out_file)) == 6
    out_dir = tmp_path / "set"
    export_run(engine_run_dir, format="sft", out=out_dir)
    export_run(engine_run_dir, format="dpo", out=out_dir)  # a saved dataset: replaced
    assert "chosen" in read_back(out_dir)[0]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(ExportError, match="not a saved dataset"):
        export_run(engine_run_dir, format="sft", out=foreign)
    assert (foreign / "notes.txt").read_text(encoding="utf-8") == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "o.jsonl", "set"]


@pytest.mark.parametrize(
    ("out", "message"),
    [("x.json", "must end in .jsonl or .parquet"), ("missing/x.jsonl", "does not exist")],
)
def test_bad_output_paths_are_refused(
    engine_run_dir: Path, tmp_path: Path, out: str, message: str
) -> None:
    with pytest.raises(ExportError, match=message):
        export_run(engine_run_dir, format="sft", out=tmp_path / out)


def test_bad_run_directories_and_options_are_refused(engine_run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a TOA run directory"):
        export_run(tmp_path, format="sft", out=tmp_path / "x.jsonl")
    (tmp_path / "manifest.json").write_text('{"config": {}}', encoding="utf-8")
    with pytest.raises(StoreError, match="no such file"):
        export_run(tmp_path, format="sft", out=tmp_path / "x.jsonl")
    with pytest.raises(ExportError, match="takes DPOOptions"):
        export_run(engine_run_dir, format="dpo", out=tmp_path / "x.jsonl", options=SFTOptions())
    with pytest.raises(ExportError, match="format must be sft or dpo"):
        export_run(engine_run_dir, format="kto", out=tmp_path / "x.jsonl")  # type: ignore[arg-type]
    assert not (tmp_path / "x.jsonl").exists()


@pytest.mark.parametrize(
    ("out", "modules", "extra"),
    [("x.parquet", ["pyarrow", "pyarrow.parquet"], "parquet"), ("x_dir", ["datasets"], "datasets")],
)
def test_a_missing_optional_library_names_its_extra(
    engine_run_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    out: str,
    modules: list[str],
    extra: str,
) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ExportError, match=rf"pip install 'toa-synth\[{extra}\]'"):
        export_run(engine_run_dir, format="sft", out=tmp_path / out)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_no_partial_output(tmp_path: Path) -> None:
    from toa.export.writers import writing

    out = tmp_path / "o.jsonl"
    out.write_text("previous\n", encoding="utf-8")

    def write_then_fail() -> None:
        with writing(out, [("id", "str")]) as writer:
            writer.write({"id": "a"})
            raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        write_then_fail()
    assert out.read_text(encoding="utf-8") == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["o.jsonl"]


@pytest.mark.parametrize("name", ["many.jsonl", "many.parquet", "many_dir"])
def test_many_rows_stream_through_in_batches(tmp_path: Path, name: str) -> None:
    if name != "many.jsonl":
        pytest.importorskip("pyarrow")
    if name == "many_dir":
        pytest.importorskip("datasets")
    lines = [result([sample(1, 0.9), sample(2, 0.1)], id=f"p{i:04d}") for i in range(2500)]
    run_dir = handmade_run(tmp_path / "run", lines)
    report = export_run(run_dir, format="dpo", out=tmp_path / name)
    rows = read_back(tmp_path / name)
    assert report.rows == len(rows) == 2500
    assert [row["id"] for row in rows] == [line["id"] for line in lines]


def _drop_trees(run_dir: Path) -> None:
    """Make the store look like one an older TOA wrote: no `trees` table."""
    import sqlite3

    conn = sqlite3.connect(run_dir / "store.sqlite")
    with conn:
        conn.execute("DROP TABLE trees")
    conn.close()


def test_every_finished_prompt_keeps_its_tree_and_the_samples_view_is_derived_from_it(
    engine_run_dir: Path,
) -> None:
    from toa.engine.results import tree_result
    from toa.search.tree import SearchTree

    with RunStore.open_readonly(engine_run_dir / "store.sqlite") as store:
        stored = list(store.iter_results_with_trees())
        assert stored
        for prompt_id, status, line, data in stored:
            assert status == "done"
            assert data is not None
            assert store.tree_for(prompt_id) == data
            tree = SearchTree.from_dict(data)
            assert tree.to_dict() == data
            assert tree.prompt_id == prompt_id
            result_line = json.loads(line)
            assert len(tree.responses()) == result_line["budget"]
            # The documented `samples` view is exactly what the tree gives.
            from toa.types import Prompt

            prompt = Prompt.from_text(prompt_id, result_line["prompt"])
            view = tree_result(prompt, tree, _compute(result_line))
            assert view["samples"] == result_line["samples"]
            assert view["best"] == result_line["best"]


def _compute(line: dict[str, Any]) -> Any:
    from toa.engine.context import Compute

    compute = Compute()
    for key, value in line["compute"].items():
        if not isinstance(value, dict):
            setattr(compute, key, value)
    return compute


@pytest.mark.parametrize("format", ["sft", "dpo"])
def test_a_store_without_trees_exports_the_same_rows_from_its_result_lines(
    engine_run_dir: Path, tmp_path: Path, format: str
) -> None:
    import shutil

    legacy = tmp_path / "legacy"
    shutil.copytree(engine_run_dir, legacy)
    _drop_trees(legacy)
    with RunStore.open_readonly(legacy / "store.sqlite") as store:
        assert all(tree is None for *_, tree in store.iter_results_with_trees())
        assert store.tree_for(next(store.iter_results())[0]) is None
    from_trees = export_run(engine_run_dir, format=format, out=tmp_path / "a.jsonl")  # type: ignore[arg-type]
    from_lines = export_run(legacy, format=format, out=tmp_path / "b.jsonl")  # type: ignore[arg-type]
    assert from_trees.rows == from_lines.rows > 0
    assert read_jsonl(tmp_path / "a.jsonl") == read_jsonl(tmp_path / "b.jsonl")


def test_a_damaged_tree_is_named_and_its_prompt_still_exports(
    engine_run_dir: Path, tmp_path: Path
) -> None:
    import shutil
    import sqlite3

    damaged = tmp_path / "damaged"
    shutil.copytree(engine_run_dir, damaged)
    conn = sqlite3.connect(damaged / "store.sqlite")
    with conn:
        (prompt_id,) = conn.execute("SELECT prompt_id FROM trees LIMIT 1").fetchone()
        conn.execute("UPDATE trees SET tree_zjson = ? WHERE prompt_id = ?", (b"junk", prompt_id))
    conn.close()
    with (
        RunStore.open_readonly(damaged / "store.sqlite") as store,
        pytest.raises(StoreError, match=f"tree of prompt {prompt_id!r} is damaged"),
    ):
        store.tree_for(prompt_id)
    # The export keeps going: that prompt's rows come from its result line, the same rows.
    whole = export_run(engine_run_dir, format="sft", out=tmp_path / "a.jsonl")
    kept = export_run(damaged, format="sft", out=tmp_path / "b.jsonl")
    assert kept.rows == whole.rows
    assert read_jsonl(tmp_path / "a.jsonl") == read_jsonl(tmp_path / "b.jsonl")
