"""Input that no row of can be good, and a configuration missing its reward kind, through `toa run`.

Each is said once, with where it is and what to do, and the run exits 1 (input) or 2 (config)
instead of repeating one message per row or reporting success on nothing.
"""

from __future__ import annotations

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


def _config(tmp_path: Path, server: FakeServer, reward: str = "  type: simulated\n") -> Path:
    path = tmp_path / "config.yaml"
    agents = "".join(
        f"  - name: {name}\n    base_url: {server.base_url}\n    model: {name}\n"
        for name in ("agent_a", "agent_b")
    )
    path.write_text(
        f"agents:\n{agents}reward:\n{reward}strategy:\n  name: random\n  budget: 2\n",
        encoding="utf-8",
    )
    return path


def _toa(*args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})


def test_an_empty_input_warns_and_exits_1(tmp_path: Path, server: FakeServer) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    before = server.stats()["total"]
    result = _toa("run", "-c", _config(tmp_path, server), "-i", empty, "-o", tmp_path / "run")
    assert result.exit_code == 1, result.output
    assert "holds no prompt to run" in result.output
    assert str(empty) in " ".join(result.output.split())
    assert server.stats()["total"] == before


def test_a_csv_header_without_a_prompt_column_is_said_once(
    tmp_path: Path, server: FakeServer
) -> None:
    path = tmp_path / "questions.csv"
    path.write_text(
        "question,answer\n" + "".join(f"q{i},{i}\n" for i in range(5000)), encoding="utf-8"
    )
    before = server.stats()["total"]
    result = _toa("run", "-c", _config(tmp_path, server), "-i", path, "-o", tmp_path / "run")
    assert result.exit_code == 1, result.output
    assert result.output.count("no prompt column") == 1, result.output
    assert len(result.output.splitlines()) < 40
    assert "--prompt-field" in result.output
    assert server.stats()["total"] == before
    again = _toa(
        "run", "-c", _config(tmp_path, server), "-i", path, "-o", tmp_path / "named",
        "--prompt-field", "question", "--limit", "2",
    )  # fmt: skip
    assert again.exit_code == 0, again.output


def test_a_reward_without_type_names_the_kinds(tmp_path: Path, server: FakeServer) -> None:
    config = _config(tmp_path, server, reward="  {}\n")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n', encoding="utf-8")
    result = _toa("run", "-c", config, "-i", prompts, "-o", tmp_path / "run")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"{config}:" in text, text
    assert "reward.type: missing; one of:" in text, text
    assert "verify" in text
    assert "chrf" in text
    assert "discriminator" not in text
    assert not (tmp_path / "run").exists()
