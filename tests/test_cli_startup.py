"""The CLI starts at once: `import toa.cli` loads no heavy dependency, and the help is whole.

The heavy parts (the configuration's pydantic models, the rewards, the agent clients and aiohttp,
the engine, the ML stacks) load inside the command that needs them. Timing is measured by
`benchmarks/cli_startup.py`, not here. `toa status` on a run directory is covered by the engine
tests (tests/engine/test_runner.py and others).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from toa.cli import app

HEAVY = (
    "aiohttp",
    "pydantic",
    "toa.config.rewards",
    "toa.rewards.verify",
    "toa.agents.client",
    "torch",
    "transformers",
    "datasets",
    "matplotlib",
    "ray",
    "numpy",
    "toa.engine",
)

COMMANDS = (
    "run",
    "resume",
    "status",
    "priors",
    "sweep",
    "eval",
    "repair",
    "export",
    "report",
    "serve",
    "fake-server",
    "demo",
    "models",
)


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}; import json, sys; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    modules: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return modules


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


def test_importing_the_cli_loads_no_heavy_module() -> None:
    assert _heavy(_loaded_after("import toa.cli")) == []


def _loaded_by_command(*argv: str) -> list[str]:
    """The modules loaded once `toa ARGV` has run (printed at exit, whatever its exit code)."""
    probe = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
        f"sys.argv = ['toa', *{list(argv)!r}]\n"
        "from toa.cli import main\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=60
    )
    modules: list[str] = json.loads(done.stderr.strip().splitlines()[-1])
    return modules


@pytest.mark.parametrize("argv", [["run", "--help"], ["status", "no-such-run-dir"]])
def test_a_command_loads_no_heavy_module_before_it_needs_one(argv: list[str]) -> None:
    # typer 0.29 builds a pydantic adapter for every option (about 0.1 s): pinned below it.
    modules = _loaded_by_command(*argv)
    assert _heavy(modules) == []
    # A reader of the store needs neither the writer's asyncio nor the manifest's package
    # versions (about 50 ms together).
    assert "asyncio" not in modules
    assert "importlib.metadata" not in modules


def test_the_strategy_names_load_without_the_strategies() -> None:
    modules = _loaded_after("import toa.search.names")
    assert "toa.search.strategies" not in modules
    assert "toa.search.toa" not in modules


def test_the_light_strategy_names_are_the_registry() -> None:
    from toa.search import names, strategies

    assert names.STRATEGY_NAMES == tuple(strategies.STRATEGIES) == strategies.STRATEGY_NAMES


@pytest.mark.parametrize("name", ["toa.search", "toa"])
def test_lazy_packages_resolve_every_public_name(name: str) -> None:
    code = (
        f"import importlib; m = importlib.import_module({name!r}); "
        "missing = [n for n in m.__all__ if not hasattr(m, n)]; "
        "assert not missing, missing"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    listed = {line.split()[1] for line in result.output.splitlines() if line.startswith("│ ")}
    assert set(COMMANDS) <= listed, listed


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_its_help(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert f"toa {command}" in result.output
