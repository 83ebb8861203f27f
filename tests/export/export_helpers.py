"""Builders for export tests: result lines by hand, run directories by hand or by the engine."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from toa.config import parse_config
from toa.engine.runner import RunReport, run
from toa.store.layout import MANIFEST_NAME, STORE_NAME
from toa.store.run_store import CallRecord, ResultStatus, RunStore
from toa.testing import FakeServer

AGENTS = ("agent_a", "agent_b", "agent_c")
ROLES = {"system", "user", "assistant"}


def sample(
    node: int, reward: float | None, agent: str = "agent_a", **fields: Any
) -> dict[str, Any]:
    """One result sample; the response defaults to a text unique to the node."""
    base: dict[str, Any] = {
        "node": node,
        "parent": None,
        "parents": [],
        "depth": 1,
        "agent": agent,
        "action": "fresh",
        "response": f"answer number {node} from {agent}",
        "reward": reward,
        "usage": {"prompt_tokens": 3, "completion_tokens": 5},
    }
    base.update(fields)
    return base


def result(
    samples: Sequence[Mapping[str, Any]],
    *,
    id: str = "p1",
    status: str = "done",
    messages: list[dict[str, str]] | None = None,
    strategy: str = "toa",
) -> dict[str, Any]:
    """One result line as `toa.engine.results.tree_result` writes it."""
    messages = messages or [{"role": "user", "content": f"Question {id}?"}]
    return {
        "id": id,
        "prompt": messages[-1]["content"],
        "messages": messages,
        "extra": {},
        "status": status,
        "strategy": strategy,
        "budget": len(samples),
        "samples": list(samples),
        "best": None,
        "compute": {"calls": len(samples)},
    }


def manifest(**overrides: Any) -> dict[str, Any]:
    """A manifest with the keys the card reads."""
    data: dict[str, Any] = {
        "format": 1,
        "config": {
            "agents": [{"name": a, "model": f"model-{a}"} for a in AGENTS],
            "reward": {"type": "simulated"},
        },
        "config_hash": "0" * 64,
        "strategy": "toa",
        "budget": 4,
        "seed": 0,
        "started": "2025-01-01T00:00:00Z",
        "versions": {"toa": "test"},
    }
    data.update(overrides)
    return data


def _call(prompt_id: str, node: int) -> CallRecord:
    return CallRecord(
        prompt_id=prompt_id, node_id=node, agent="agent_a", request_hash="h", ok=True,
        text="partial", error=None, error_type=None, prompt_tokens=1, completion_tokens=1,
        finish_reason="stop", latency_s=0.0, attempts=1, endpoint=None, created_s=0.0,
    )  # fmt: skip


def handmade_run(
    run_dir: Path,
    results: Iterable[Mapping[str, Any]],
    *,
    partial: Iterable[str] = (),
    raw: Iterable[tuple[str, ResultStatus, str]] = (),
) -> Path:
    """A run directory whose store holds `results` (in order), calls of `partial` prompt ids that
    have no result, and `raw` (prompt_id, status, text) results stored verbatim."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / MANIFEST_NAME).write_text(json.dumps(manifest()), encoding="utf-8")

    async def fill(store: RunStore) -> None:
        writes = []  # gathered: queued in this order, committed in groups
        for line in results:
            status: ResultStatus = "done" if line["status"] == "done" else "failed"
            writes.append(store.write_result(str(line["id"]), status, json.dumps(line)))
        await asyncio.gather(*writes)
        for prompt_id, raw_status, text in raw:
            await store.write_result(prompt_id, raw_status, text)
        for prompt_id in partial:
            await store.write_call(_call(prompt_id, 1))

    store = RunStore(run_dir / STORE_NAME)
    try:
        asyncio.run(fill(store))
    finally:
        store.close()
    return run_dir


def engine_settings(base_url: str, *, budget: int = 8, strategy: str = "toa", **top: Any) -> Any:
    """Settings for a run of the three simulated agents against the fake server at `base_url`."""
    data: dict[str, Any] = {
        "agents": [{"name": a, "base_url": base_url, "model": a, "params_b": 1.0} for a in AGENTS],
        "reward": {"type": "simulated"},
        "strategy": {"name": strategy, "budget": budget},
        "runner": {"prompts_in_flight": 4},
        "seed": 7,
    }
    data.update(top)
    return parse_config(data)


def write_prompts(path: Path, n: int) -> Path:
    """`n` prompts of varied families, as JSONL."""
    topics = ("why is the sky blue", "add 17 and 25", "a haiku about rain", "translate hello")
    rows = (
        json.dumps({"id": f"q{i:03d}", "prompt": f"Prompt {i}: {topics[i % len(topics)]}?"})
        for i in range(n)
    )
    path.write_text("".join(row + "\n" for row in rows), encoding="utf-8")
    return path


async def run_engine(
    run_dir: Path, prompts: Path, server: FakeServer, **settings: Any
) -> RunReport:
    """Run the engine in-process against `server`."""
    return await run(
        engine_settings(server.base_url, **settings), input_path=prompts, run_dir=run_dir
    )


def engine_run(run_dir: Path, prompts: Path, **settings: Any) -> Path:
    """A finished run directory made by the real engine against a fresh fake server."""

    async def go() -> None:
        async with FakeServer(seed=1) as server:
            await run_engine(run_dir, prompts, server, **settings)

    asyncio.run(go())
    return run_dir


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def is_message_list(value: object, *, roles: set[str] = ROLES) -> bool:
    """TRL's conversational element: a list of {"role": str, "content": str} dicts."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            isinstance(m, dict)
            and set(m) == {"role", "content"}
            and m["role"] in roles
            and isinstance(m["content"], str)
            for m in value
        )
    )
