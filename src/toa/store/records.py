"""Request identity and stored records of calls: request hashes, seeds, record builders.

See `toa.engine.context` ("Seeds") for how the request key and the occurrence give each request
its seed, and why the request hash stored with a call includes it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from toa.agents.spec import AgentSpec
from toa.errors import AgentError
from toa.store.run_store import CallRecord, RewardRecord
from toa.types import Completion, Message, Score, ScoreFailure

__all__ = ["RequestIdentity", "call_seed", "request_hash", "request_key"]


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
"""The request hash's JSON form (one encoder, built once: `json.dumps` with options builds one
per call)."""

_STRING = json.encoder.encode_basestring
"""What `_CANONICAL` writes for a str (quoted, escaped, UTF-8 as is)."""


def _canonical_encoder() -> Callable[[Any], str]:
    """`_CANONICAL.encode`, or the same output without its per-call set-up: the standard
    library's C encoder made once (its `JSONEncoder` makes one per call). Used only when this
    Python has it and it writes exactly what `_CANONICAL` writes for a probe."""
    encode = _CANONICAL.encode
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return encode
    try:
        once = make(None, _CANONICAL.default, _STRING, None, ":", ",", True, False, True)
    except TypeError:  # another signature: not this CPython's
        return encode

    def fast(value: Any) -> str:
        return "".join(once(value, 0))

    probe = [{"b": 1.5e-7, "a": 'é\n\u2028"', "c": [None, True, -3]}, "x", 0.1]
    try:
        same = fast(probe) == encode(probe)
    except Exception:  # any surprise: keep the standard path
        same = False
    return fast if same else encode


_encode = _canonical_encoder()

_HEADS: dict[int, tuple[AgentSpec, str, str, str, str, str, str]] = {}
"""Per agent spec (by identity, the spec kept alive beside it): `_spec_parts`; built once per
spec."""


def _spec_parts(spec: AgentSpec) -> tuple[str, str, str, str, str, str]:
    """(text before the messages, text between messages and sampling, text after the sampling,
    the seedless sampling's JSON, and the seeded sampling's JSON before and after the seed's
    digits) of the canonical request JSON: its keys, sorted, are agent, extra_body, messages,
    mode, model, sampling, template (see `request_hash`)."""
    found = _HEADS.get(id(spec))
    if found is not None and found[0] is spec:
        return found[1:]
    encode = _encode
    template = spec.prompt_template if spec.mode == "completion" else None
    head = f'{{"agent":{encode(spec.name)},"extra_body":{encode(dict(spec.extra_body))},"messages":'
    middle = f',"mode":{encode(spec.mode)},"model":{encode(spec.model)},"sampling":'
    tail = f',"template":{encode(template)}}}'
    fields = replace(spec.sampling, seed=None).to_request_fields()
    seedless = encode(fields)
    seeded = encode({**fields, "seed": 0})  # sorted keys: one "seed" key, its value 0
    at = seeded.index('"seed":0') + len('"seed":')
    if len(_HEADS) >= 1024:  # specs are few; a long test session must not grow this forever
        _HEADS.clear()
    parts = (head, middle, tail, seedless, seeded[:at], seeded[at + 1 :])
    _HEADS[id(spec)] = (spec, *parts)
    return parts


def messages_json(messages: Sequence[Message]) -> str:
    """The messages' part of the canonical request JSON (encode once, hash twice: the request's
    key and its hash share it)."""
    # `Message.to_dict` is {"role", "content"}: sorted, "content" comes first
    string = _STRING
    parts = [f'{{"content":{string(m.content)},"role":{string(m.role)}}}' for m in messages]
    return f"[{','.join(parts)}]"


def request_hash(
    spec: AgentSpec,
    messages: Sequence[Message],
    sampling: dict[str, Any],
    *,
    encoded: str | None = None,
) -> str:
    """sha256 of everything that decides what a call generates (not where it is sent).

    The hashed text is the JSON of ``{"agent", "model", "mode", "template" (completion mode),
    "messages", "sampling", "extra_body"}`` with sorted keys, compact separators and UTF-8 as is
    (``json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False)``), put
    together from parts so the per-agent parts are encoded once. `encoded`: `messages_json` of
    `messages`, when the caller has it already.
    """
    return _hash(spec, messages, _encode(sampling), encoded)


def _hash(spec: AgentSpec, messages: Sequence[Message], sampling: str, encoded: str | None) -> str:
    head, middle, tail, *_ = _spec_parts(spec)
    body = encoded if encoded is not None else messages_json(messages)
    text = f"{head}{body}{middle}{sampling}{tail}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def request_key(spec: AgentSpec, messages: Sequence[Message], *, encoded: str | None = None) -> str:
    """The request hash without a seed: what identical requests have in common."""
    return _hash(spec, messages, _spec_parts(spec)[3], encoded)


class RequestIdentity:
    """One request's key, then its hash once its seed is known, from one pass over its text.

    ``RequestIdentity(spec, encoded).key`` is ``request_key(spec, messages)``, and
    ``.hash_with(seed)`` is ``request_hash(spec, messages, fields)`` with ``fields`` the agent's
    sampling fields with that seed (`encoded`: `messages_json(messages)`). The canonical text up
    to the sampling is hashed once and both digests go on from a copy; the seeded sampling's
    JSON is the agent's, with the seed's digits put in (an int is written as its digits).
    """

    __slots__ = ("_after", "_before", "_prefix", "key")

    def __init__(self, spec: AgentSpec, encoded: str) -> None:
        head, middle, tail, seedless, before, after = _spec_parts(spec)
        self._before, self._after = before, after + tail
        self._prefix = hashlib.sha256(f"{head}{encoded}{middle}".encode())
        keyed = self._prefix.copy()
        keyed.update(f"{seedless}{tail}".encode())
        self.key: str = keyed.hexdigest()

    def hash_with(self, seed: int) -> str:
        """The request hash with the agent's sampling and this `seed`."""
        hashed = self._prefix.copy()
        hashed.update(f"{self._before}{int(seed)}{self._after}".encode())
        return hashed.hexdigest()


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
