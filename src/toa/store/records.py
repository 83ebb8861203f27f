"""Request identity and stored records of calls: request hashes, seeds, record builders.

See `toa.engine.context` ("Seeds") for how the request key and the occurrence give each request
its seed, and why the request hash stored with a call includes it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from toa.agents.spec import AgentSpec
from toa.errors import AgentError
from toa.store.run_store import CallRecord, RewardRecord
from toa.types import Completion, Message, Score, ScoreFailure

__all__ = ["call_seed", "request_hash", "request_key"]


def request_hash(spec: AgentSpec, messages: Sequence[Message], sampling: dict[str, Any]) -> str:
    """sha256 of everything that decides what a call generates (not where it is sent)."""
    canonical = {
        "agent": spec.name,
        "model": spec.model,
        "mode": spec.mode,
        "template": spec.prompt_template if spec.mode == "completion" else None,
        "messages": [m.to_dict() for m in messages],
        "sampling": sampling,
        "extra_body": dict(spec.extra_body),
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def request_key(spec: AgentSpec, messages: Sequence[Message]) -> str:
    """The request hash without a seed: what identical requests have in common."""
    return request_hash(spec, messages, replace(spec.sampling, seed=None).to_request_fields())


def call_seed(run_seed: int, prompt_id: str, request_key: str, occurrence: int) -> int:
    """The per-request sampling seed, in [0, 2**31): stable across processes and strategies.

    Args:
        run_seed: the run's seed.
        prompt_id: the prompt the request belongs to.
        request_key: `request_hash` of the request without a seed.
        occurrence: how many requests with the same key this prompt made before (0, 1, ...).
    """
    text = f"{run_seed}\x1f{prompt_id}\x1f{request_key}\x1f{occurrence}"
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def replayed_score(stored: RewardRecord) -> Score:
    if stored.ok and stored.score is not None:
        return stored.score
    return ScoreFailure(f"(replayed) {stored.error}", error_type="ReplayedFailure")


def ok_record(
    prompt_id: str, node_id: int, key: str, completion: Completion, started: float
) -> CallRecord:
    return CallRecord(
        prompt_id=prompt_id,
        node_id=node_id,
        agent=completion.agent,
        request_hash=key,
        ok=True,
        text=completion.text,
        error=None,
        error_type=None,
        prompt_tokens=completion.usage.prompt_tokens,
        completion_tokens=completion.usage.completion_tokens,
        finish_reason=completion.finish_reason,
        latency_s=completion.latency_s,
        attempts=completion.attempts,
        endpoint=completion.endpoint,
        created_s=started,
    )


def failed_record(
    prompt_id: str, node_id: int, agent: str, key: str, error: AgentError, started: float
) -> CallRecord:
    return CallRecord(
        prompt_id=prompt_id,
        node_id=node_id,
        agent=agent,
        request_hash=key,
        ok=False,
        text=None,
        error=str(error),
        error_type=type(error).__name__,
        prompt_tokens=None,
        completion_tokens=None,
        finish_reason=None,
        latency_s=time.time() - started,
        attempts=0,
        endpoint=error.endpoint or None,
        created_s=started,
    )
