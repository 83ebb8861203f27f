"""What is refused before a run directory is touched, and what a run's own files are kept from.

Each case goes through the real command line (`toa run`, `toa resume`, `toa export`) against the
fake server on loopback, and checks the exit code, the one-line message and what is on disk.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from toa.cli import app
from toa.testing import FakeServer, running_in_thread


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with running_in_thread() as fake:
        yield fake


def _config(tmp_path: Path, server: FakeServer, extra: str = "", strategy: str = "") -> Path:
    path = tmp_path / "config.yaml"
    agents = "".join(
        f"  - name: {name}\n    base_url: {server.base_url}\n    model: {name}\n{extra}"
        for name in ("agent_a", "agent_b", "agent_c")
    )
    strategy = strategy or "strategy:\n  name: random\n  budget: 2\n"
    path.write_text(f"agents:\n{agents}reward:\n  type: simulated\n{strategy}", encoding="utf-8")
    return path


def _prompts(tmp_path: Path, n: int = 3) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"p{i}", "prompt": f"Question {i}?"}) + "\n" for i in range(n)),
        encoding="utf-8",
    )
    return path


def _toa(*args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})


def _one_error(result: Any) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.output.strip().startswith("error: "), result.output
    return " ".join(result.output.split())


def test_an_unset_key_variable_is_refused_before_anything_is_created(
    tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOA_TEST_NO_SUCH_KEY", raising=False)
    config = _config(tmp_path, server, extra="    api_key_env: TOA_TEST_NO_SUCH_KEY\n")
    out = tmp_path / "run"
    message = _one_error(_toa("run", "-c", config, "-i", _prompts(tmp_path), "-o", out))
    assert "agent 'agent_a': environment variable TOA_TEST_NO_SUCH_KEY" in message
    assert "nothing was created" in message
    assert not out.exists()


def test_a_missing_input_is_refused_before_anything_is_created(
    tmp_path: Path, server: FakeServer
) -> None:
    out = tmp_path / "run"
    missing = tmp_path / "nope.jsonl"
    message = _one_error(_toa("run", "-c", _config(tmp_path, server), "-i", missing, "-o", out))
    assert f"{missing}: no such input file" in message
    assert not out.exists()


def test_an_output_that_is_a_file_or_under_one_is_a_one_line_error(
    tmp_path: Path, server: FakeServer
) -> None:
    config, prompts = _config(tmp_path, server), _prompts(tmp_path)
    a_file = tmp_path / "taken.txt"
    a_file.write_text("mine\n", encoding="utf-8")
    message = _one_error(_toa("run", "-c", config, "-i", prompts, "-o", a_file))
    assert "is a file, not a directory" in message
    message = _one_error(_toa("run", "-c", config, "-i", prompts, "-o", a_file / "run"))
    assert f"is under {a_file}, which is a file" in message
    assert a_file.read_text(encoding="utf-8") == "mine\n"


def test_a_foreign_non_empty_directory_is_refused_unless_forced(
    tmp_path: Path, server: FakeServer
) -> None:
    config, prompts = _config(tmp_path, server), _prompts(tmp_path)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "results.jsonl").write_text('{"precious": true}\n', encoding="utf-8")
    (foreign / "notes.md").write_text("keep me\n", encoding="utf-8")
    message = _one_error(_toa("run", "-c", config, "-i", prompts, "-o", foreign))
    assert "is not a TOA run directory and is not empty (it holds notes.md)" in message
    assert "--force" in message
    assert (foreign / "results.jsonl").read_text(encoding="utf-8") == '{"precious": true}\n'
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.md", "results.jsonl"]
    forced = _toa("run", "-c", config, "-i", prompts, "-o", foreign, "--force")
    assert forced.exit_code == 0, forced.output
    assert (foreign / "notes.md").read_text(encoding="utf-8") == "keep me\n"
    # An empty directory, or a run directory, needs no --force.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _toa("run", "-c", config, "-i", prompts, "-o", empty).exit_code == 0
    assert _toa("run", "-c", config, "-i", prompts, "-o", empty).exit_code == 0


def test_a_width_below_the_agent_count_is_refused_when_the_config_loads(
    tmp_path: Path, server: FakeServer
) -> None:
    strategy = "strategy:\n  name: toa\n  budget: 8\n  width: 2\n"
    config = _config(tmp_path, server, strategy=strategy)
    out = tmp_path / "run"
    message = _one_error(_toa("run", "-c", config, "-i", _prompts(tmp_path), "-o", out))
    assert f"{config}:16: strategy.width: 2 is smaller than the number of agents (3)" in message
    assert not out.exists()


@pytest.mark.parametrize("damage", ["deleted", "emptied"])
def test_a_run_whose_store_is_gone_is_refused_and_its_results_are_kept(
    tmp_path: Path, server: FakeServer, damage: str
) -> None:
    out = tmp_path / "run"
    done = _toa("run", "-c", _config(tmp_path, server), "-i", _prompts(tmp_path), "-o", out)
    assert done.exit_code == 0, done.output
    results = (out / "results.jsonl").read_text(encoding="utf-8")
    assert len(results.splitlines()) == 3
    store = out / "store.sqlite"
    store.unlink()
    if damage == "emptied":
        store.write_bytes(b"")
    before = server.stats()["total"]
    message = _one_error(_toa("resume", out))
    state = "is missing" if damage == "deleted" else "is empty (0 bytes)"
    assert f"the run's store store.sqlite {state}, but results.jsonl holds 3 finished" in message
    assert "would pay for every call again" in message
    assert server.stats()["total"] == before  # nothing was sent
    assert (out / "results.jsonl").read_text(encoding="utf-8") == results
    assert not (out / "results.jsonl.tmp").exists()


def test_an_export_never_writes_over_the_runs_own_files(tmp_path: Path, server: FakeServer) -> None:
    out = tmp_path / "run"
    done = _toa("run", "-c", _config(tmp_path, server), "-i", _prompts(tmp_path), "-o", out)
    assert done.exit_code == 0, done.output
    results = (out / "results.jsonl").read_bytes()
    message = _one_error(_toa("export", out, "-f", "sft", "-o", out / "results.jsonl"))
    assert "is one of the run's own files" in message
    assert (out / "results.jsonl").read_bytes() == results
    message = _one_error(_toa("export", out, "-f", "sft", "-o", out))
    assert "is a run directory" in message
    # Beside the run's files, a new name is fine.
    assert _toa("export", out, "-f", "sft", "-o", out / "sft.jsonl").exit_code == 0


def test_help_shows_force(tmp_path: Path) -> None:
    text = textwrap.dedent(_toa("run", "--help").output)
    assert "--force" in text


def test_status_on_an_empty_store_says_it_is_empty(tmp_path: Path, server: FakeServer) -> None:
    out = tmp_path / "run"
    done = _toa("run", "-c", _config(tmp_path, server), "-i", _prompts(tmp_path), "-o", out)
    assert done.exit_code == 0, done.output
    (out / "store.sqlite").write_bytes(b"")
    message = _one_error(_toa("status", out))
    assert "the file is empty (0 bytes) and holds no record" in message
    assert "committed records are kept" not in message
