"""The public namespaces export what the docs promise, sorted, and nothing missing."""

from __future__ import annotations

import importlib

import pytest

MODULES = [
    "toa",
    "toa.agents",
    "toa.config",
    "toa.engine",
    "toa.export",
    "toa.local",
    "toa.errors",
    "toa.rewards",
    "toa.search",
    "toa.testing",
    "toa.types",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported)
    assert len(set(exported)) == len(exported)
    for symbol in exported:
        assert hasattr(module, symbol), f"{name}.{symbol} is in __all__ but missing"


def test_top_level_names() -> None:
    import toa

    for symbol in ("AgentError", "Completion", "Message", "Prompt", "TOAError", "is_retryable"):
        assert symbol in toa.__all__


def test_exception_tree_has_one_root() -> None:
    import toa.errors as errors

    for symbol in errors.__all__:
        obj = getattr(errors, symbol)
        if isinstance(obj, type):
            assert issubclass(obj, errors.TOAError)
