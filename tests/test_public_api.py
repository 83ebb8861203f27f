"""The public namespaces export what the docs promise, sorted, and nothing missing."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

MODULES = [
    "toa",
    "toa.agents",
    "toa.config",
    "toa.engine",
    "toa.export",
    "toa.inputs",
    "toa.local",
    "toa.errors",
    "toa.report",
    "toa.rewards",
    "toa.search",
    "toa.settings",
    "toa.store",
    "toa.sweep",
    "toa.testing",
    "toa.types",
]


def _ruff_order(name: str) -> tuple[int, str]:
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    # Plain order, or ruff's RUF022 order (CONSTANTS, then Classes, then the rest).
    assert exported in (sorted(exported), sorted(exported, key=_ruff_order)), exported
    assert len(set(exported)) == len(exported)
    for symbol in exported:
        assert hasattr(module, symbol), f"{name}.{symbol} is in __all__ but missing"


def test_top_level_names() -> None:
    import toa

    for symbol in ("AgentError", "Completion", "Message", "Prompt", "TOAError", "is_retryable"):
        assert symbol in toa.__all__


def test_the_front_door_is_the_library_itself() -> None:
    import toa
    from toa.config import load_config, parse_config, with_overrides
    from toa.engine.runner import run
    from toa.export import export_run
    from toa.search import make_strategy
    from toa.search.tree import SearchTree

    assert toa.run is run
    assert toa.load_config is load_config
    assert toa.parse_config is parse_config
    assert toa.with_overrides is with_overrides
    assert toa.export_run is export_run
    assert toa.make_strategy is make_strategy
    assert toa.SearchTree is SearchTree
    assert callable(toa.build_reward)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = toa.nope  # type: ignore[attr-defined]


def test_import_toa_loads_no_heavy_dependency() -> None:
    """`import toa` (and so `toa --help`'s first step) loads the errors and types only."""
    code = (
        "import sys, toa; "
        "print(' '.join(m for m in ('pydantic', 'aiohttp', 'yaml', 'rich', 'toa.engine') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_library_rooms_never_import_the_test_kit() -> None:
    """Only the applications (the CLI's `fake-server`, `toa demo --simulated`) use toa.testing."""
    src = Path(__file__).resolve().parents[1] / "src" / "toa"
    offenders = []
    for path in sorted(src.rglob("*.py")):
        relative = path.relative_to(src).as_posix()
        if relative.startswith(("testing/", "cli/")) or relative == "demo.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            offenders += [f"{relative}: {n}" for n in names if n.startswith("toa.testing")]
    assert offenders == []


def test_no_module_imports_a_private_name_of_another() -> None:
    src = Path(__file__).resolve().parents[1] / "src" / "toa"
    offenders = []
    for path in sorted(src.rglob("*.py")):
        assert not path.name.startswith("_") or path.name in ("__init__.py", "__main__.py"), path
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("toa"):
                offenders += [
                    f"{path.relative_to(src)}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and a.name != "__version__"
                ]
    assert offenders == []


def test_no_import_circles() -> None:
    """The module graph of `toa` (every import, TYPE_CHECKING ones included) has no cycle."""
    src = Path(__file__).resolve().parents[1] / "src"
    graph: dict[str, set[str]] = {}
    for path in sorted((src / "toa").rglob("*.py")):
        module = ".".join(path.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
        deps = graph.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("toa"):
                deps.add(node.module or "")
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("toa"))
    # A module may import its own package's names (the package re-exports them), and a
    # package's __init__ imports its modules: those edges are how Python packages work.
    for module, deps in graph.items():
        graph[module] = {d for d in deps if d in graph and not module.startswith(d + ".")}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert cycles == []


def test_exception_tree_has_one_root() -> None:
    import toa.errors as errors

    for symbol in errors.__all__:
        obj = getattr(errors, symbol)
        if isinstance(obj, type):
            assert issubclass(obj, errors.TOAError)
