"""Options from command-line values, and `toa export` itself once the CLI has the command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from export_helpers import handmade_run, read_jsonl, result, sample

from toa.export import DPOOptions, ExportError, SFTOptions, make_options


def test_sft_options_from_flags() -> None:
    fmt, options = make_options("sft", layout="prompt-completion", system_prompt="S")
    assert fmt == "sft"
    assert options == SFTOptions(layout="prompt_completion", system_prompt="S")


def test_dpo_options_from_flags() -> None:
    assert make_options("dpo") == ("dpo", DPOOptions())
    _, options = make_options("dpo", rejected_rank=30, pairs_per_prompt=2, different_agents=True)
    assert options == DPOOptions(rejected_rank=30, pairs_per_prompt=2, different_agents=True)
    assert make_options("dpo", rejected="rank", rejected_rank=5)[1] == DPOOptions(rejected_rank=5)
    assert make_options("dpo", rejected="lowest")[1] == DPOOptions()


@pytest.mark.parametrize(
    ("format", "flags", "message"),
    [
        ("kto", {}, "--format must be sft or dpo"),
        ("sft", {"layout": "chat"}, "layout must be"),
        ("dpo", {"rejected": "lowest", "rejected_rank": 3}, "contradict"),
        ("dpo", {"rejected": "rank"}, "needs --rejected-rank"),
        ("dpo", {"rejected": "median"}, "--rejected must be lowest or rank"),
        ("dpo", {"if_short": "drop"}, "if_short must be"),
        ("dpo", {"dedupe": "fuzzy"}, "dedupe must be"),
    ],
)
def test_bad_flags_say_what_is_wrong(format: str, flags: dict[str, Any], message: str) -> None:
    with pytest.raises(ExportError, match=message):
        make_options(format, **flags)


def cli_app() -> Any:
    """The `toa` Typer app, or skip while it has no `export` command."""
    from toa import cli

    names = {command.name for command in cli.app.registered_commands}
    if "export" not in names:
        pytest.skip("`toa export` is not wired into toa.cli yet")
    return cli.app


def test_toa_export_command_prints_the_report(tmp_path: Path) -> None:
    app = cli_app()
    from typer.testing import CliRunner

    lines = [result([sample(1, 0.9), sample(2, 0.2)], id=f"p{i}") for i in range(3)]
    run_dir = handmade_run(tmp_path / "run", lines, partial=["late"])
    out = tmp_path / "pairs.jsonl"
    args = ["export", str(run_dir), "--format", "dpo", "-o", str(out), "--card"]
    outcome = CliRunner().invoke(app, args, env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert outcome.exit_code == 0, outcome.output
    assert "wrote 3 DPO rows" in outcome.output
    assert "left out, unfinished: 1" in outcome.output
    assert [row["id"] for row in read_jsonl(out)] == ["p0", "p1", "p2"]
    assert (tmp_path / "pairs.jsonl.card.md").is_file()
    none = CliRunner().invoke(app, [*args[:5], str(tmp_path / "n.jsonl"), "--min-margin", "1"])
    assert none.exit_code == 1
    bad = CliRunner().invoke(app, [*args[:3], "kto", "-o", str(tmp_path / "k.jsonl")])
    assert bad.exit_code == 2
    assert json.loads(out.read_text(encoding="utf-8").splitlines()[0])["chosen_reward"] == 0.9
