"""Configuration: YAML errors name the file, the line, the field and what is allowed; CLI help."""

from __future__ import annotations

import logging
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from toa.cli import app
from toa.config import load_config, parse_config, with_overrides
from toa.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "config.yaml"

GOOD = """\
agents:
  - name: qwen
    base_url: http://127.0.0.1:8001/v1
    model: Qwen/Qwen2-7B-Instruct
    mode: chat
  - name: llama
    base_url: [http://127.0.0.1:8002/v1, http://127.0.0.1:8003/v1]
    model: meta-llama/Llama-3-8B
reward:
  type: simulated
strategy:
  name: toa
  budget: 8
seed: 1
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    return str(raised.value)


def test_good_config_and_the_example_load(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, GOOD))
    assert [a.name for a in settings.agents] == ["qwen", "llama"]
    assert settings.agents[1].base_urls == ("http://127.0.0.1:8002/v1", "http://127.0.0.1:8003/v1")
    assert (settings.budget, settings.seed, settings.strategy.name) == (8, 1, "toa")
    example = load_config(EXAMPLE)
    assert [a.name for a in example.agents] == ["agent_a", "agent_b", "agent_c"]
    assert example.agents[1].mode == "completion"


def test_config_hash_is_stable_and_changes_with_settings(tmp_path: Path) -> None:
    first = load_config(write(tmp_path, GOOD))
    again = load_config(write(tmp_path, GOOD))
    assert first.config_hash() == again.config_hash()
    hotter = load_config(write(tmp_path, GOOD.replace("budget: 8", "budget: 9")))
    assert hotter.config_hash() != first.config_hash()


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "allowed"),
    [
        ("    mode: chat\n", "    mode: chatt\n", 5, "agents.0.mode", ["'chat'", "'completion'"]),
        (
            "    model: meta-llama/Llama-3-8B\n",
            "    model: meta-llama/Llama-3-8B\n    colour: red\n",
            9,
            "agents.1.colour",
            ["base_url", "max_concurrency", "sampling"],
        ),
        ("seed: 1\n", "seed: 1\nsed: 2\n", 15, "sed", ["agents", "strategy", "seed"]),
        ("  name: toa\n", "  name: toaa\n", 12, "strategy.name", ["'toa'", "'random'", "'moa'"]),
        (
            "  budget: 8\n",
            "  budget: 8\n  normalize: {kind: zscore}\n",
            14,
            "strategy.normalize.kind",
            ["'rank'", "'minmax'", "'sigmoid'"],
        ),
        ("  type: simulated\n", "  type: simulatd\n", 10, "reward.type", ["'simulated'"]),
        (
            "  type: simulated\n",
            "  scale: 1\n",
            10,
            "reward.type",
            ["missing; one of:", "chrf", "judge", "simulated", "verify"],
        ),
        ("  budget: 8\n", "  budget: 0\n", 13, "strategy.budget", ["greater than or equal to 1"]),
        (
            "    base_url: http://127.0.0.1:8001/v1\n",
            "    base_url: 127.0.0.1:8001\n",
            3,
            "agents.0.base_url",
            ["http(s) URL"],
        ),
    ],
    ids=[
        "mode",
        "unknown-key",
        "unknown-top-key",
        "strategy",
        "nested",
        "reward",
        "reward-type-missing",
        "budget",
        "url",
    ],
)
def test_a_wrong_field_names_file_line_field_and_allowed_values(
    tmp_path: Path, old: str, new: str, line: int, field: str, allowed: list[str]
) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    message = error_of(path)
    assert f"{path}:{line}: {field}:" in message, message
    for value in allowed:
        assert value in message, message


def test_strategy_setting_of_another_strategy_is_named_with_its_line(tmp_path: Path) -> None:
    text = GOOD.replace("  name: toa\n", "  name: ensemble\n") + "  alpha: 0.1\n"
    text = text.replace("seed: 1\n", "") + "seed: 1\n"
    path = write(tmp_path, text)
    assert "  alpha: 0.1" in path.read_text().splitlines()[13]
    message = error_of(path)
    assert f"{path}:14: strategy.alpha:" in message, message
    assert "'ensemble'" in message
    assert "none" in message

    toa_only = GOOD.replace("  budget: 8\n", "  budget: 8\n  agent: qwen\n")
    message = error_of(write(tmp_path, toa_only))
    assert "strategy.agent" in message
    assert "'alpha'" in message
    assert "'width'" in message


def test_random_with_an_unknown_agent_names_the_agents(tmp_path: Path) -> None:
    text = GOOD.replace("  name: toa\n", "  name: random\n").replace(
        "  budget: 8\n", "  budget: 8\n  agent: gpt\n"
    )
    path = write(tmp_path, text)
    message = error_of(path)
    assert f"{path}:14: strategy.agent:" in message, message
    assert "'gpt'" in message
    assert "'qwen'" in message
    assert "'llama'" in message


def test_other_config_errors(tmp_path: Path) -> None:
    dupes = GOOD.replace("name: llama", "name: qwen")
    path = write(tmp_path, dupes)
    message = error_of(path)
    assert str(path) in message
    assert "agents" in message
    assert "qwen" in message

    key = GOOD.replace("    mode: chat\n", "    mode: chat\n    api_key_env: sk-abcdef123\n")
    message = error_of(write(tmp_path, key))
    assert "agents.0.api_key_env" in message
    assert "NAME of the environment variable" in message

    path = tmp_path / "broken.yaml"
    path.write_text("agents: [\n", encoding="utf-8")
    assert str(path) in error_of(path)
    assert "YAML" in error_of(path)
    path.write_text("- just\n- a list\n", encoding="utf-8")
    assert "mapping" in error_of(path)
    assert "cannot read" in error_of(tmp_path / "missing.yaml")
    path.write_bytes(b"agents: \xff\xfe\n")
    assert "UTF-8" in error_of(path)


def test_parse_config_without_a_file_names_the_source() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config({"agents": [], "reward": {"type": "simulated"}}, source="<test>")
    assert "<test>" in str(raised.value)
    assert "agents" in str(raised.value)


def test_overrides_revalidate(tmp_path: Path) -> None:
    settings = load_config(
        write(tmp_path, GOOD.replace("  budget: 8\n", "  budget: 8\n  alpha: 0.2\n"))
    )
    other = with_overrides(settings, strategy="ensemble", budget=4)
    assert (other.strategy.name, other.budget) == ("ensemble", 4)  # toa settings dropped
    assert with_overrides(settings) is settings
    assert with_overrides(settings, budget=3).budget == 3


@pytest.fixture
def keep_logging() -> Iterator[None]:
    """The CLI reconfigures the root logger: put it back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_run_help_lists_its_options(keep_logging: None) -> None:
    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = re.sub(r"\x1b\[[0-9;]*m", "", result.output)
    for option in ("--config", "-c", "--input", "-i", "--output", "-o", "--strategy", "--budget",
                   "--limit", "--prompt-field"):  # fmt: skip
        assert option in text, option
    for command in (["resume", "--help"], ["status", "--help"]):
        result = CliRunner().invoke(app, command, env={"COLUMNS": "200"})
        assert result.exit_code == 0
        assert "run_dir" in result.output.lower()


def test_cli_config_error_exit_code_2(tmp_path: Path, keep_logging: None) -> None:
    path = write(tmp_path, GOOD.replace("    mode: chat\n", "    mode: chatt\n"))
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"id": 1, "prompt": "hi"}\n', encoding="utf-8")
    result = CliRunner().invoke(
        app, ["run", "-c", str(path), "-i", str(prompts), "-o", str(tmp_path / "run")],
        env={"COLUMNS": "400"},
    )  # fmt: skip
    assert result.exit_code == 2
    assert "agents.0.mode" in result.output
    assert f"{path}:5" in result.output
    assert not (tmp_path / "run").exists()


def test_breaker_cooldowns_out_of_order_is_a_config_error_with_its_line(
    tmp_path: Path, keep_logging: None
) -> None:
    path = write(
        tmp_path,
        GOOD.replace(
            "    mode: chat\n",
            "    mode: chat\n    breaker: {cooldown_s: 100, max_cooldown_s: 10}\n",
        ),
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert f"{path}:6" in message
    assert "agents.0.breaker" in message
    assert "max_cooldown_s (10) must be >= cooldown_s (100)" in message
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"id": 1, "prompt": "hi"}\n', encoding="utf-8")
    result = CliRunner().invoke(
        app, ["run", "-c", str(path), "-i", str(prompts), "-o", str(tmp_path / "run")],
        env={"COLUMNS": "400"},
    )  # fmt: skip
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def _with_strategy(tmp_path: Path, strategy: str) -> Path:
    text = GOOD.replace("strategy:\n  name: toa\n  budget: 8\n", strategy)
    return write(tmp_path, text)


def test_toa_rule_and_prior_settings(tmp_path: Path) -> None:
    default = load_config(write(tmp_path, GOOD))
    assert default.strategy.config.rule == "bayes"  # type: ignore[attr-defined]
    assert (default.prior_source, default.prior) == ("online", None)
    # a configuration written for the paper's UCB keeps its meaning
    old = load_config(_with_strategy(tmp_path, "strategy:\n  name: toa\n  alpha: 0.2\n"))
    assert old.strategy.config.rule == "ucb"  # type: ignore[attr-defined]
    assert old.prior_source == "none"
    preset = load_config(_with_strategy(tmp_path, "strategy:\n  name: toa\n  preset: math\n"))
    assert (preset.strategy.config.rule, preset.prior_source) == ("ucb", "none")  # type: ignore[attr-defined]
    strong = load_config(
        _with_strategy(tmp_path, "strategy:\n  name: toa\n  prior: {strength: 3}\n")
    )
    assert strong.strategy.config.prior_strength == 3  # type: ignore[attr-defined]
    none = load_config(
        _with_strategy(tmp_path, "strategy:\n  name: toa\n  prior: {source: none}\n")
    )
    assert none.prior_source == "none"
    baseline = load_config(_with_strategy(tmp_path, "strategy:\n  name: ensemble\n"))
    assert baseline.prior_source == "none"


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        (
            "strategy:\n  name: toa\n  rule: bayes\n  alpha: 0.2\n",
            r"config\.yaml:\d+: strategy\.alpha: applies to TOA's rule 'ucb' .* use `rule: ucb`",
        ),
        (
            "strategy:\n  name: toa\n  preset: wmt\n  rule: bayes\n",
            r"strategy\.rule: the paper preset 'wmt' uses the paper's rule 'ucb'",
        ),
        (
            "strategy:\n  name: toa\n  preset: wmt\n  prior: {source: online}\n",
            r"strategy\.prior: cross-prompt priors need TOA's rule 'bayes'.*preset 'wmt'",
        ),
        (
            "strategy:\n  name: toa\n  rule: ucb\n  aggregate: false\n",
            r"strategy\.aggregate: applies to TOA's rule 'bayes' only",
        ),
        (
            "strategy:\n  name: toa\n  prior: {source: file}\n",
            r"config\.yaml:\d+: strategy\.prior: source 'file' needs `path: priors\.json`",
        ),
        (
            "strategy:\n  name: toa\n  prior: {source: none, path: p.json}\n",
            r"strategy\.prior\.path: not used with `source: none`",
        ),
        (
            "strategy:\n  name: ensemble\n  prior: {source: none}\n",
            r"strategy\.prior: not a setting of strategy 'ensemble'",
        ),
        (
            "strategy:\n  name: toa\n  prior: {source: file, path: missing.json}\n",
            r"missing\.json: prior file not found; write one with `toa priors RUN_DIR",
        ),
    ],
)
def test_rule_and_prior_errors_name_the_field(tmp_path: Path, strategy: str, message: str) -> None:
    assert re.search(message, error_of(_with_strategy(tmp_path, strategy))), error_of(
        _with_strategy(tmp_path, strategy)
    )


def test_a_prior_file_is_read_relative_to_the_config_and_checked_before_any_call(
    tmp_path: Path,
) -> None:
    from toa.search.priors import ArmCounts, Prior

    prior = Prior(("qwen", "llama"), 4, fresh={"llama": ArmCounts(6, 2, 4.5, ranked=6)})
    (tmp_path / "priors.json").write_text(prior.to_json(), encoding="utf-8")
    strategy = "strategy:\n  name: toa\n  prior: {source: file, path: priors.json}\n"
    settings = load_config(_with_strategy(tmp_path, strategy))
    assert settings.prior_source == "file"
    assert settings.prior is not None
    assert settings.prior.to_json() == prior.to_json()
    other = Prior(("qwen", "mistral"), 1)
    (tmp_path / "priors.json").write_text(other.to_json(), encoding="utf-8")
    message = error_of(_with_strategy(tmp_path, strategy))
    assert "priors.json: the prior is about agents ['qwen', 'mistral']" in message
    assert "missing: ['llama']" in message


def test_strategy_names_come_from_one_list(tmp_path: Path) -> None:
    from toa.config.schema import SETTINGS_BY_STRATEGY
    from toa.search.strategies import STRATEGY_NAMES

    assert tuple(SETTINGS_BY_STRATEGY) == STRATEGY_NAMES
    path = _with_strategy(tmp_path, "strategy:\n  name: beam\n  budget: 8\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "strategy.name" in message
    assert f"{path}:12" in message
    assert "unknown strategy 'beam'; choose one of 'toa', 'random', 'prs', 'ensemble'" in message
