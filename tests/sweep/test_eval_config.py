"""The configuration's `eval:` section: any reward kind judging the chosen answers afterwards."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from toa.cli import app
from toa.testing import build_world, running_in_thread


def _write(tmp_path: Path, base_url: str, eval_section: str) -> tuple[Path, Path]:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({"id": f"p{i}", "prompt": f"What is {i} + 1?", "gold_answer": str(i + 1)})
            + "\n"
            for i in range(4)
        ),
        encoding="utf-8",
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        f"agents:\n  - {{name: agent_a, model: agent_a, base_url: '{base_url}'}}\n"
        f"reward: {{type: simulated}}\n{eval_section}strategy: {{name: ensemble, budget: 2}}\n",
        encoding="utf-8",
    )
    return config, prompts


def test_the_eval_section_scores_runs_and_sweeps_and_never_blocks_a_resume(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    env = {"COLUMNS": "200"}
    with running_in_thread() as server:
        config, prompts = _write(tmp_path, server.base_url, "eval: {type: verify}\n")
        run_dir = tmp_path / "run"
        done = runner.invoke(
            app, ["run", "-c", str(config), "-i", str(prompts), "-o", str(run_dir)]
        )
        assert done.exit_code == 0, done.output
        scored = runner.invoke(app, ["eval", str(run_dir), "--eval", "config"], env=env)
        assert scored.exit_code == 0, scored.output
        block = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))
        assert block["kind"] == "config"
        assert block["accuracy"] == 0.0  # the fake agents never give the right number
        assert block["scored"] == 4
        # another eval section changes nothing generated: the run continues, nothing is sent
        sent = server.stats()["total"]
        config.write_text(
            config.read_text(encoding="utf-8").replace("{type: verify}", "{type: chrf}"),
            encoding="utf-8",
        )
        again = runner.invoke(
            app, ["run", "-c", str(config), "-i", str(prompts), "-o", str(run_dir)]
        )
        assert again.exit_code == 0, again.output
        assert server.stats()["total"] == sent
        # a sweep uses the section by default, and checks its field in every row first
        sweep = tmp_path / "sweep"
        refused = runner.invoke(
            app,
            ["sweep", "-c", str(config), "-i", str(prompts), "-o", str(sweep),
             "--strategies", "ensemble", "--budgets", "2"],
            env=env,
        )  # fmt: skip
        assert refused.exit_code == 2, refused.output
        assert "'reference'" in refused.output
        assert server.stats()["total"] == sent
        # the run's manifest now holds `eval: {type: chrf}`: its field is checked too
        chrf = runner.invoke(app, ["eval", str(run_dir), "--eval", "config"], env=env)
        assert chrf.exit_code == 2, chrf.output
        assert "'reference'" in chrf.output
        # a configuration without the section: `--eval config` says so
        bare = tmp_path / "bare"
        bare.mkdir()
        config, prompts = _write(bare, server.base_url, "")
        done = runner.invoke(
            app, ["run", "-c", str(config), "-i", str(prompts), "-o", str(bare / "run")]
        )
        assert done.exit_code == 0, done.output
        nothing = runner.invoke(app, ["eval", str(bare / "run"), "--eval", "config"], env=env)
    assert nothing.exit_code == 2, nothing.output
    assert "no `eval:` section" in nothing.output


def test_a_judge_evaluates_the_sweep_once_and_judge_agent_names_an_agent(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"COLUMNS": "200"}
    world = build_world("helps", "agent_a", judges="judge")
    with running_in_thread(world) as server:
        section = f"eval: {{type: judge, agent: {{model: judge, base_url: '{server.base_url}'}}}}\n"
        config, prompts = _write(tmp_path, server.base_url, section)
        sweep = tmp_path / "sweep"
        args = ["sweep", "-c", str(config), "-i", str(prompts), "-o", str(sweep),
                "--strategies", "ensemble", "--budgets", "1,2", "--eval", "judge"]  # fmt: skip
        done = runner.invoke(app, args, env=env)
        assert done.exit_code == 0, done.output
        doc = json.loads((sweep / "sweep.json").read_text(encoding="utf-8"))
        for cell in doc["cells"]:
            assert cell["eval"]["kind"] == "judge"
            assert cell["eval"]["scored"] == 4
            assert 0.0 <= cell["eval"]["mean_best"] <= 1.0
        judged = server.stats()["by_agent"]["judge"]
        assert judged > 0
        # The same results with the same judge: read back from each cell's eval.json, no call.
        total = server.stats()["total"]
        again = runner.invoke(app, args, env=env)
        assert again.exit_code == 0, again.output
        assert server.stats()["total"] == total
        assert json.loads((sweep / "sweep.json").read_text(encoding="utf-8")) == doc
        # judge:AGENT: a yes/no judge through a configured agent, which must exist.
        cell_dir = sweep / doc["cells"][0]["run_dir"]
        wrong = runner.invoke(app, ["eval", str(cell_dir), "--eval", "judge:nobody"], env=env)
        assert wrong.exit_code == 2, wrong.output
        assert "'nobody' is not one of the agents ['agent_a']" in wrong.output
        assert server.stats()["total"] == total
        bad = runner.invoke(app, ["eval", str(cell_dir), "--eval", "jduge"], env=env)
        assert bad.exit_code == 2, bad.output
        assert "judge:AGENT" in bad.output
