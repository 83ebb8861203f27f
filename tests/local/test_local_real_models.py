"""End to end with the real bundled models: three llama.cpp servers, one generation from each.

Skips (with the reason) only when the `local` extra is not installed: llama-cpp-python or a
model package is missing. Uses the real model cache (assembled once, ~750 MB) and a private
state directory, so it never touches servers a user has running.
"""

from __future__ import annotations

import importlib.metadata as metadata
import time

import pytest

from toa.agents import AgentPool
from toa.local import (
    DEFAULT_MODELS,
    ModelPackageMissingError,
    agent_specs,
    cache_dir,
    get_model,
    model_status,
    start_servers,
    stop_servers,
)
from toa.local.assemble import locate_parts
from toa.local.procs import pid_alive
from toa.types import SamplingParams

REAL_CACHE = cache_dir()  # read at import, before the per-test TOA_CACHE_DIR of conftest
QUESTION = "Sam has 3 bags with 5 marbles in each bag. How many marbles does Sam have?"


def _missing_local_extra() -> str | None:
    try:
        metadata.distribution("llama-cpp-python")
    except metadata.PackageNotFoundError:
        return "llama-cpp-python is not installed (the `local` extra; run `make install-local`)"
    for name in DEFAULT_MODELS:
        try:
            locate_parts(get_model(name))
        except ModelPackageMissingError as error:
            return f"model packages of the `local` extra are missing: {error}"
    return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(_missing_local_extra() is not None, reason=str(_missing_local_extra())),
]


async def test_three_real_models_generate() -> None:
    started = time.monotonic()
    servers = start_servers(DEFAULT_MODELS, cache_dir=REAL_CACHE, ready_timeout_s=120)
    try:
        rows = {r.name: r for r in model_status(DEFAULT_MODELS, cache_dir=REAL_CACHE)}
        assert {(r.hash_state, r.server_state) for r in rows.values()} == {("verified", "up")}
        sampling = SamplingParams(temperature=0.0, max_tokens=24, seed=1)
        async with AgentPool(agent_specs(servers, sampling=sampling)) as pool:
            for name in DEFAULT_MODELS:
                reply = await pool[name].generate(QUESTION)
                assert reply.text.strip(), f"{name} returned nothing"
                assert reply.usage.completion_tokens is not None
                assert 1 <= reply.usage.completion_tokens <= 24
                assert reply.finish_reason in ("stop", "length")
        gemma = get_model("gemma3-270m")
        assert gemma.mode == "completion"
    finally:
        stopped = stop_servers(DEFAULT_MODELS)
    assert sorted(stopped) == sorted(DEFAULT_MODELS)
    assert not any(pid_alive(s.pid) for s in servers.values() if s.pid is not None)
    assert time.monotonic() - started < 240
