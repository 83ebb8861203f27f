"""Run directories for report tests: a small one by the real engine, a big one by hand."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from toa.config import parse_config
from toa.engine.context import Compute
from toa.engine.results import tree_result
from toa.engine.runner import run
from toa.search.tree import SearchTree
from toa.store.layout import MANIFEST_NAME, STORE_NAME
from toa.store.run_store import RunStore
from toa.testing import FakeServer, Faults
from toa.types import Completion, Message, Prompt, Usage

AGENTS = ("agent_a", "agent_b", "agent_c")
HOSTILE = "</script><script>window.pwned=1</script><img src=x onerror=window.pwned=2> <!--"
"""A prompt text that must stay text (model output and prompts are untrusted)."""


def run_async(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run `main()` on an event loop of its own thread (a browser test's thread has one running)."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: asyncio.run(main())).result()


def write_prompts(path: Path, n: int) -> Path:
    topics = ("why is the sky blue", "add 17 and 25", "a haiku about rain", "translate hello")
    rows = [
        {"id": f"q{i:03d}", "prompt": f"Prompt {i}: {topics[i % len(topics)]}?"} for i in range(n)
    ]
    rows.append({"id": "hostile", "prompt": HOSTILE})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def engine_run(run_dir: Path, prompts: Path, *, budget: int = 6) -> Path:
    """A finished run whose first generation requests fail (500, no retry): failed nodes."""

    async def go() -> None:
        faults = Faults(script=("500", "500", "500"))
        async with FakeServer(seed=1, faults=faults) as server:
            data: dict[str, Any] = {
                "agents": [
                    {
                        "name": a,
                        "base_url": server.base_url,
                        "model": a,
                        "params_b": 1.0,
                        "retry": {"max_attempts": 1},
                    }
                    for a in AGENTS
                ],
                "reward": {"type": "simulated"},
                "strategy": {"name": "toa", "budget": budget},
                "runner": {"prompts_in_flight": 2},
                "seed": 7,
            }
            await run(parse_config(data), input_path=prompts, run_dir=run_dir)

    run_async(go)
    return run_dir


def synthetic_tree(prompt_id: str, nodes: int, text_chars: int) -> SearchTree:
    """A TOA-shaped tree of `nodes` scored responses (fresh, then refines of the best so far),
    each text `text_chars` characters long."""
    tree = SearchTree.new(prompt_id=prompt_id, strategy="toa", agents=AGENTS, budget=nodes, seed=0)
    best, best_reward = 0, -1.0
    for i in range(nodes):
        agent = AGENTS[i % len(AGENTS)]
        action: Any = "fresh" if i < 3 else "refine"
        parent = 0 if action == "fresh" else best
        arm = tree.agent_child(parent, agent, action)
        node = tree.add_response(arm, parents=() if action == "fresh" else (best,))
        body = (f"{prompt_id} answer {i} by {agent}. " * (text_chars // 20 + 1))[:text_chars]
        completion = Completion(
            agent=agent, text=body, usage=Usage(40, 60), finish_reason="stop", endpoint="e",
            model=agent, latency_s=0.1,
        )  # fmt: skip
        tree.record_completion(node, completion)
        reward = ((i * 7919 + len(prompt_id) * 31) % 1000) / 1000
        tree.record_reward(node, reward, reward)
        if reward > best_reward:
            best, best_reward = node, reward
    return tree


def synthetic_run(run_dir: Path, prompts: int, nodes: int, text_chars: int) -> int:
    """A run directory of `prompts` finished prompts with stored trees, written by hand; returns
    the characters of prompt and response text it holds."""
    run_dir.mkdir(parents=True)
    manifest = {
        "format": 2, "config": {"agents": [{"name": a} for a in AGENTS]},
        "config_hash": "ab" * 32, "strategy": "toa", "budget": nodes, "seed": 0,
        "started": "2026-01-01T00:00:00Z",
    }  # fmt: skip
    (run_dir / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    chars = 0

    async def fill(store: RunStore) -> None:
        nonlocal chars
        writes = []
        for i in range(prompts):
            prompt_id = f"p{i:05d}"
            text = f"Question {i}: explain the thing number {i} in some detail, please."
            tree = synthetic_tree(prompt_id, nodes, text_chars)
            chars += len(prompt_id) + len(text) + sum(len(n.text or "") for n in tree.nodes)
            prompt = Prompt(id=prompt_id, messages=(Message("user", text),))
            line = tree_result(prompt, tree, Compute(calls=nodes, prompt_tokens=40 * nodes))
            store.submit_tree(prompt_id, tree.to_dict())
            writes.append(store.write_result(prompt_id, "done", json.dumps(line)))
        await asyncio.gather(*writes)

    store = RunStore(run_dir / STORE_NAME)
    try:
        run_async(lambda: fill(store))
    finally:
        store.close()
    return chars
