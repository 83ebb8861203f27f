"""A run knows its input: another file, an edited finished prompt, appended or removed prompts.

Every run here is real: the runner against the fake server on 127.0.0.1 with the simulated
reward; the server's request log says what was sent, the store and results.jsonl what was kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from toa.cli import app
from toa.config import parse_config
from toa.engine.input_identity import InputIdentity, InputScan, check_input, prompt_hash
from toa.engine.runner import run
from toa.errors import InputError
from toa.inputs.readers import read_prompts
from toa.search import Prior
from toa.settings import RunSettings
from toa.store.run_store import CallRecord, RewardRecord, RunStore
from toa.testing import FakeServer, running_in_thread
from toa.types import Message, Prompt

AGENTS = ("agent_a", "agent_b", "agent_c")


def settings(base_url: str, strategy: str = "toa", budget: int = 4) -> RunSettings:
    return parse_config(
        {
            "agents": [{"name": n, "base_url": base_url, "model": n} for n in AGENTS],
            "reward": {"type": "simulated"},
            "strategy": {"name": strategy, "budget": budget},
            "runner": {"prompts_in_flight": 1},
            "seed": 3,
        }
    )


def question(i: int, version: str = "") -> str:
    return f"Question {i}:{version} why?"


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def rows(n: int, **edits: str) -> list[dict[str, Any]]:
    """Rows p0..p{n-1}; `edits` maps an id to a new version tag of its question."""
    return [
        {"id": f"p{i}", "prompt": question(i, edits.get(f"p{i}", "")), "reference": f"ref {i}"}
        for i in range(n)
    ]


def results(run_dir: Path) -> dict[str, dict[str, Any]]:
    lines = (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()
    parsed = [json.loads(line) for line in lines]
    by_id = {r["id"]: r for r in parsed}
    assert len(by_id) == len(parsed)  # one line per prompt
    return by_id


def stored(run_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(run_dir / "store.sqlite")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def manifest(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    return data


def asked_about(server: FakeServer) -> set[int]:
    """The prompts (by number) the requests the server received were about."""
    about = set()
    for request in server.requests:
        text = json.dumps(request.body.get("messages", []))
        found = {i for i in range(20) if f"Question {i}:" in text}
        assert len(found) == 1, text
        about |= found
    return about


@pytest.fixture
async def server() -> Any:
    async with FakeServer() as fake:
        yield fake


async def test_the_manifest_records_the_inputs_identity_and_the_store_each_prompts_hash(
    tmp_path: Path, server: FakeServer
) -> None:
    inputs = write_rows(tmp_path / "in.jsonl", rows(3))
    run_dir = tmp_path / "run"
    report = await run(settings(server.base_url), input_path=inputs, run_dir=run_dir)
    assert (report.finished, report.exit_code) == (3, 0)
    recorded = manifest(run_dir)["input"]
    assert recorded == {
        "path": str(inputs.resolve()),
        "prompt_field": None,
        "sha256": hashlib.sha256(inputs.read_bytes()).hexdigest(),
        "bytes": inputs.stat().st_size,
        "prompts": 3,
    }
    hashes = dict(stored(run_dir, "SELECT prompt_id, prompt_hash FROM prompt_hashes"))
    prompts = [p for p in read_prompts(inputs) if isinstance(p, Prompt)]
    assert hashes == {p.id: prompt_hash(p) for p in prompts}
    # the hash of the prompt in its result line is the same (what older stores fall back to)
    for line in results(run_dir).values():
        messages = tuple(Message(m["role"], m["content"]) for m in line["messages"])
        assert prompt_hash(Prompt(line["id"], messages, line["extra"])) == hashes[line["id"]]


async def test_the_same_input_resumes_and_a_limited_run_continues(
    tmp_path: Path, server: FakeServer
) -> None:
    inputs = write_rows(tmp_path / "in.jsonl", rows(3))
    run_dir = tmp_path / "run"
    first = await run(settings(server.base_url), input_path=inputs, run_dir=run_dir, limit=2)
    assert (first.total, first.finished) == (2, 2)
    assert manifest(run_dir)["input"]["prompts"] == 3  # the whole file, not the limit
    server.reset_stats()
    again = await run(settings(server.base_url), input_path=inputs, run_dir=run_dir)
    assert (again.total, again.already_done, again.finished, again.exit_code) == (3, 2, 1, 0)
    assert asked_about(server) == {2}
    assert sorted(results(run_dir)) == ["p0", "p1", "p2"]


async def test_another_file_is_refused_naming_both_and_nothing_is_sent(
    tmp_path: Path, server: FakeServer
) -> None:
    inputs = write_rows(tmp_path / "in.jsonl", rows(3))
    run_dir = tmp_path / "run"
    await run(settings(server.base_url), input_path=inputs, run_dir=run_dir)
    before_manifest = (run_dir / "manifest.json").read_text(encoding="utf-8")
    before_results = (run_dir / "results.jsonl").read_text(encoding="utf-8")
    sent = server.stats()["total"]
    other = write_rows(tmp_path / "other.jsonl", rows(4, p1="v2"))
    with pytest.raises(InputError) as refused:
        await run(settings(server.base_url), input_path=other, run_dir=run_dir)
    message = str(refused.value)
    assert f"this run was made from {inputs.resolve()}" in message
    assert f"you gave {other.resolve()}" in message
    assert "3 prompts" in message
    assert "4 prompts" in message
    assert "1 finished prompt(s) edited, 1 prompt(s) not in the run" in message
    assert "Nothing was sent" in message
    assert server.stats()["total"] == sent
    assert (run_dir / "manifest.json").read_text(encoding="utf-8") == before_manifest
    assert (run_dir / "results.jsonl").read_text(encoding="utf-8") == before_results
    # --rerun-changed does not make another file this run's input
    with pytest.raises(InputError, match="this run was made from"):
        await run(settings(server.base_url), input_path=other, run_dir=run_dir, rerun_changed=True)
    assert server.stats()["total"] == sent


async def test_an_edited_finished_prompt_is_refused_then_rerun_changed_runs_only_it(
    tmp_path: Path, server: FakeServer
) -> None:
    inputs = write_rows(tmp_path / "in.jsonl", rows(3))
    run_dir = tmp_path / "run"
    await run(settings(server.base_url), input_path=inputs, run_dir=run_dir)
    old = results(run_dir)
    before_manifest = (run_dir / "manifest.json").read_text(encoding="utf-8")
    write_rows(inputs, rows(3, p1="v2"))
    server.reset_stats()
    with pytest.raises(InputError) as refused:
        await run(settings(server.base_url), input_path=inputs, run_dir=run_dir)
    message = str(refused.value)
    assert "1 finished prompt(s) of the run" in message
    assert "'p1'" in message
    assert "--rerun-changed" in message
    assert server.stats()["total"] == 0
    assert (run_dir / "manifest.json").read_text(encoding="utf-8") == before_manifest

    report = await run(
        settings(server.base_url), input_path=inputs, run_dir=run_dir, rerun_changed=True
    )
    assert (report.already_done, report.finished, report.exit_code) == (2, 1, 0)
    assert asked_about(server) == {1}
    assert all(
        question(1, "v2") in json.dumps(r.body["messages"]) for r in server.requests
    )  # only the new text was asked about
    now = results(run_dir)
    assert now["p1"]["prompt"] == question(1, "v2")
    assert now["p0"] == old["p0"]
    assert now["p2"] == old["p2"]
    # one tree and one piece of evidence per prompt; p1's are the new ones
    evidence = [p for (p,) in stored(run_dir, "SELECT prompt_id FROM evidence ORDER BY seq")]
    assert evidence == ["p0", "p2", "p1"]
    assert len(stored(run_dir, "SELECT prompt_id FROM trees")) == 3
    # its new search started from what the run had learned from the others (not from itself)
    (prior_json,) = stored(run_dir, "SELECT prior_json FROM priors WHERE prompt_id = 'p1'")[0]
    assert Prior.from_dict(json.loads(prior_json)).prompts == 2
    assert manifest(run_dir)["input"]["sha256"] == hashlib.sha256(inputs.read_bytes()).hexdigest()
    # and now it is the run's input: nothing more to do
    server.reset_stats()
    again = await run(settings(server.base_url), input_path=inputs, run_dir=run_dir)
    assert (again.already_done, again.finished) == (3, 0)
    assert server.stats()["total"] == 0


async def test_an_edit_of_a_reward_field_only_counts_and_identical_calls_are_replayed(
    tmp_path: Path, server: FakeServer
) -> None:
    inputs = write_rows(tmp_path / "in.jsonl", rows(2))
    run_dir = tmp_path / "run"
    ensemble = settings(server.base_url, strategy="ensemble", budget=3)
    await run(ensemble, input_path=inputs, run_dir=run_dir)
    edited = rows(2)
    edited[0]["reference"] = "a better reference"
    write_rows(inputs, edited)
    with pytest.raises(InputError, match="'p0'"):
        await run(ensemble, input_path=inputs, run_dir=run_dir)
    server.reset_stats()
    report = await run(ensemble, input_path=inputs, run_dir=run_dir, rerun_changed=True)
    assert report.finished == 1
    assert server.stats()["total"] == 0  # the same requests: replayed, not paid again
    assert report.compute.replayed_calls == 3
    assert report.compute.reward_calls == 3  # but scored again, against the new reference
    assert results(run_dir)["p0"]["extra"]["reference"] == "a better reference"


async def test_appended_prompts_run_and_removed_ones_keep_their_results(
    tmp_path: Path, server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    inputs = write_rows(tmp_path / "in.jsonl", rows(3))
    run_dir = tmp_path / "run"
    await run(settings(server.base_url), input_path=inputs, run_dir=run_dir)
    write_rows(inputs, rows(5))
    server.reset_stats()
    with caplog.at_level(logging.INFO, logger="toa.engine.input_identity"):
        report = await run(settings(server.base_url), input_path=inputs, run_dir=run_dir)
    assert (report.already_done, report.finished, report.exit_code) == (3, 2, 0)
    assert asked_about(server) == {3, 4}
    assert "2 prompt(s) new to the run" in caplog.text
    assert manifest(run_dir)["input"]["prompts"] == 5

    write_rows(inputs, rows(5)[2:])  # p0 and p1 are gone
    server.reset_stats()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="toa.engine.input_identity"):
        report = await run(settings(server.base_url), input_path=inputs, run_dir=run_dir)
    assert (report.already_done, report.finished) == (3, 0)
    assert server.stats()["total"] == 0
    assert "2 finished prompt(s) of the run are no longer in the input" in caplog.text
    assert sorted(results(run_dir)) == ["p0", "p1", "p2", "p3", "p4"]


async def test_a_moved_identical_file_is_the_same_input(
    tmp_path: Path, server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    inputs = write_rows(tmp_path / "in.jsonl", rows(3))
    run_dir = tmp_path / "run"
    await run(settings(server.base_url), input_path=inputs, run_dir=run_dir, limit=2)
    moved = tmp_path / "elsewhere" / "prompts.jsonl"
    moved.parent.mkdir()
    shutil.move(inputs, moved)
    server.reset_stats()
    with caplog.at_level(logging.INFO, logger="toa.engine.input_identity"):
        report = await run(settings(server.base_url), input_path=moved, run_dir=run_dir)
    assert (report.already_done, report.finished) == (2, 1)
    assert asked_about(server) == {2}
    assert "the run's input moved from" in caplog.text
    assert manifest(run_dir)["input"]["path"] == str(moved.resolve())


async def test_a_run_of_an_older_release_without_input_hashes_is_accepted_and_checked(
    tmp_path: Path, server: FakeServer
) -> None:
    inputs = write_rows(tmp_path / "in.jsonl", rows(3))
    run_dir = tmp_path / "run"
    await run(settings(server.base_url), input_path=inputs, run_dir=run_dir, limit=2)

    def make_old() -> None:  # what an older TOA wrote: no input hash, no prompt hashes
        data = manifest(run_dir)
        data["input"] = {"path": data["input"]["path"], "prompt_field": None}
        (run_dir / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
        conn = sqlite3.connect(run_dir / "store.sqlite")
        with conn:
            conn.execute("DROP TABLE prompt_hashes")
        conn.close()

    make_old()
    server.reset_stats()
    report = await run(settings(server.base_url), input_path=inputs, run_dir=run_dir)
    assert (report.already_done, report.finished) == (2, 1)
    assert asked_about(server) == {2}
    assert manifest(run_dir)["input"]["sha256"] == hashlib.sha256(inputs.read_bytes()).hexdigest()

    # an edit is still found: the prompt is read back from its result line
    make_old()
    write_rows(inputs, rows(3, p0="v2"))
    with pytest.raises(InputError, match="'p0'"):
        await run(settings(server.base_url), input_path=inputs, run_dir=run_dir)
    # another path holding the same prompts is accepted (nothing tells it apart)
    copy = write_rows(tmp_path / "copy.jsonl", rows(3))
    server.reset_stats()
    report = await run(settings(server.base_url), input_path=copy, run_dir=run_dir)
    assert (report.already_done, server.stats()["total"]) == (3, 0)


async def test_an_unfinished_prompt_that_changed_starts_over(
    tmp_path: Path, server: FakeServer
) -> None:
    inputs = write_rows(tmp_path / "in.jsonl", rows(3))
    run_dir = tmp_path / "run"
    await run(settings(server.base_url), input_path=inputs, run_dir=run_dir, limit=2)
    # as if p2 had started from another text: its hash and a prior of its own are stored
    (p0_prior,) = stored(run_dir, "SELECT prior_json FROM priors WHERE prompt_id = 'p0'")[0]
    conn = sqlite3.connect(run_dir / "store.sqlite")
    with conn:
        conn.execute("INSERT INTO prompt_hashes VALUES ('p2', 'an older text')")
        conn.execute("INSERT INTO priors VALUES ('p2', ?)", (p0_prior,))
    conn.close()
    write_rows(inputs, rows(3, p2="v2"))  # the file changed: it is compared
    report = await run(settings(server.base_url), input_path=inputs, run_dir=run_dir)
    assert (report.already_done, report.finished) == (2, 1)
    (prior_json,) = stored(run_dir, "SELECT prior_json FROM priors WHERE prompt_id = 'p2'")[0]
    assert Prior.from_dict(json.loads(prior_json)).prompts == 2  # a fresh start, not p0's prior
    assert results(run_dir)["p2"]["prompt"] == question(2, "v2")


async def test_a_discard_removes_all_but_the_calls_of_one_prompt_in_one_transaction(
    tmp_path: Path,
) -> None:
    store = RunStore(tmp_path / "store.sqlite")
    try:
        for prompt_id in ("a", "b"):
            call = CallRecord(prompt_id, 0, "x", "h", True, "t", None, None, 1, 1, "stop", 0.1, 1,
                              None, 1.0)  # fmt: skip
            await store.write_call(call)
            await store.write_reward(RewardRecord(prompt_id, 0, "r", True, 0.5, None, 1.0))
            await store.submit_prior(prompt_id, "{}")
            await store.submit_evidence(prompt_id, "{}")
            await store.submit_tree(prompt_id, {"nodes": []})
            await store.submit_prompt_hash(prompt_id, f"hash-{prompt_id}")
            await store.write_result(prompt_id, "done", "{}")
        commits = store.commit_count
        await store.submit_discard("a")
        assert store.commit_count == commits + 1
        assert store.prompt_hash("a") is None
        assert store.prompt_hash("b") == "hash-b"
        assert store.result_for("a") is None
        assert store.result_for("b") == ("done", "{}")
    finally:
        store.close()
    for table in ("results", "trees", "evidence", "rewards", "priors", "prompt_hashes"):
        assert stored(tmp_path, f"SELECT prompt_id FROM {table}") == [("b",)], table
    assert sorted(stored(tmp_path, "SELECT prompt_id FROM calls")) == [("a",), ("b",)]


def test_a_refusal_names_ten_edited_prompts_and_counts_the_rest(tmp_path: Path) -> None:
    recorded = {"path": "/in.jsonl", "prompt_field": None, "sha256": "a" * 64, "prompts": 12}
    current = InputIdentity("/in.jsonl", None, "b" * 64, 10, 12)
    scan = InputScan(prompts=12, compared=True, edited=[f"p{i}" for i in range(12)])
    with pytest.raises(InputError) as refused:
        check_input(recorded, current, scan, run_dir=tmp_path)
    message = str(refused.value)
    assert message.startswith("/in.jsonl: 12 finished prompt(s) of the run in ")
    assert "'p9' and 2 more;" in message
    assert "'p10'" not in message
    check_input(recorded, current, scan, run_dir=tmp_path, rerun_changed=True)  # accepted


# ------------------------------------------------------------------------------ the CLI


@pytest.fixture(scope="module")
def cli_server() -> Iterator[FakeServer]:
    with running_in_thread() as fake:
        yield fake


def _toa(*args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})


def _config(tmp_path: Path, server: FakeServer) -> Path:
    path = tmp_path / "config.yaml"
    agents = "".join(
        f"  - name: {name}\n    base_url: {server.base_url}\n    model: {name}\n" for name in AGENTS
    )
    strategy = "strategy:\n  name: random\n  budget: 2\n"
    path.write_text(f"agents:\n{agents}reward:\n  type: simulated\n{strategy}", encoding="utf-8")
    return path


def test_the_cli_refuses_an_edit_and_another_file_and_reruns_with_the_flag(
    tmp_path: Path, cli_server: FakeServer
) -> None:
    config = _config(tmp_path, cli_server)
    inputs = write_rows(tmp_path / "in.jsonl", rows(3))
    out = tmp_path / "run"
    done = _toa("run", "-c", config, "-i", inputs, "-o", out)
    assert done.exit_code == 0, done.output
    sent = cli_server.stats()["total"]

    other = write_rows(tmp_path / "other.jsonl", rows(3, p2="v2"))
    refused = _toa("run", "-c", config, "-i", other, "-o", out)
    assert refused.exit_code == 2, refused.output
    text = " ".join(refused.output.split())
    assert text.startswith("error: ")
    assert "Traceback" not in text
    assert f"this run was made from {inputs.resolve()}" in text
    assert f"you gave {other.resolve()}" in text

    write_rows(inputs, rows(3, p2="v2"))
    for args in (("run", "-c", config, "-i", inputs, "-o", out), ("resume", out)):
        refused = _toa(*args)
        assert refused.exit_code == 2, refused.output
        text = " ".join(refused.output.split())
        assert "1 finished prompt(s) of the run" in text
        assert "'p2'" in text
        assert "pass --rerun-changed" in text
    assert cli_server.stats()["total"] == sent  # nothing was sent

    rerun = _toa("resume", out, "--rerun-changed")
    assert rerun.exit_code == 0, rerun.output
    assert cli_server.stats()["total"] == sent + 2  # p2 only, at budget 2
    assert results(out)["p2"]["prompt"] == question(2, "v2")
    assert _toa("run", "-c", config, "-i", inputs, "-o", out).exit_code == 0
    assert cli_server.stats()["total"] == sent + 2
