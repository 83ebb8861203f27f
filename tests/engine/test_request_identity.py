"""Request identity: the hash stored with every call is what resume and the cache look calls up by.

The hash is built from parts (the per-agent parts encoded once, the messages once per call); it
must stay byte-for-byte the documented canonical JSON, or stores written before would no longer
replay and a resume would pay again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from toa.agents.spec import AgentSpec
from toa.store.records import RequestIdentity, messages_json, request_hash, request_key
from toa.types import Message, SamplingParams

URL = ("http://127.0.0.1:1/v1",)
MESSAGES = [Message("system", "Be brief."), Message("user", 'Ünïcode? 2+2="4"')]


def documented_hash(spec: AgentSpec, messages: list[Message], sampling: dict[str, Any]) -> str:
    """The definition in `request_hash`'s docstring, spelled out the slow way."""
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


def test_hashes_of_earlier_releases_are_unchanged() -> None:
    """Pinned values, computed by the release before the hash was built from parts."""
    chat = AgentSpec(
        name="qwen",
        base_urls=URL,
        model="Qwen/Qwen2.5-1.5B",
        sampling=SamplingParams(temperature=0.7, max_tokens=256, stop=("\n\n",)),
        extra_body={"top_k": 20},
    )
    base = AgentSpec(
        name="base", base_urls=URL, model="m", mode="completion", prompt_template="Q: {prompt}\nA:"
    )
    assert request_key(chat, MESSAGES) == (
        "92a43c19a691ef3d85fe88ec52fdb8abe99224744d67ad29247f7d930aebbf81"
    )
    assert request_hash(chat, MESSAGES, {"temperature": 0.7, "seed": 123}) == (
        "b4b2fd72a87c89c809790237bb4ccfaee034985a9638f6c61bfa9da6f08b7eba"
    )
    assert request_key(base, MESSAGES) == (
        "dd7478ab8addce3a0daa82f4b2699c5184f02d630cd1cc0f18867b4d4bffa51d"
    )


text = st.text(max_size=40)
messages = st.lists(
    st.builds(Message, st.sampled_from(["system", "user", "assistant"]), text),
    min_size=1,
    max_size=4,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
specs = st.builds(
    AgentSpec,
    name=text.filter(bool),
    base_urls=st.just(URL),
    model=text.filter(bool),
    mode=st.sampled_from(["chat", "completion"]),
    prompt_template=st.sampled_from(["{prompt}", "Q: {prompt}\nA:", "{system}\n{prompt}"]),
    extra_body=st.dictionaries(text, json_values, max_size=3),
    sampling=st.builds(
        SamplingParams,
        temperature=st.floats(0, 2),
        top_p=st.floats(0.01, 1),
        max_tokens=st.integers(1, 4096),
        stop=st.lists(text, max_size=2).map(tuple),
    ),
)


@given(specs, messages, st.one_of(st.none(), st.integers(0, 2**31 - 1)))
def test_hash_from_parts_is_the_documented_json(
    spec: AgentSpec, msgs: list[Message], seed: int | None
) -> None:
    sampling = SamplingParams(
        temperature=spec.sampling.temperature,
        top_p=spec.sampling.top_p,
        max_tokens=spec.sampling.max_tokens,
        stop=spec.sampling.stop,
        seed=seed,
    ).to_request_fields()
    expected = documented_hash(spec, msgs, sampling)
    assert request_hash(spec, msgs, sampling) == expected
    assert request_hash(spec, msgs, sampling, encoded=messages_json(msgs)) == expected
    seedless = {k: v for k, v in spec.sampling.to_request_fields().items() if k != "seed"}
    assert request_key(spec, msgs) == documented_hash(spec, msgs, seedless)


@given(specs, messages, st.integers(0, 2**31 - 1), st.one_of(st.none(), st.integers(0, 99)))
def test_one_pass_identity_is_the_key_and_the_seeded_hash(
    spec: AgentSpec, msgs: list[Message], seed: int, own_seed: int | None
) -> None:
    """`RequestIdentity` (what the engine's context uses: the text up to the sampling hashed
    once) gives `request_key` and `request_hash` of the seeded request, whatever seed the agent's
    own sampling holds."""
    spec = dataclasses.replace(spec, sampling=dataclasses.replace(spec.sampling, seed=own_seed))
    identity = RequestIdentity(spec, messages_json(msgs))
    assert identity.key == request_key(spec, msgs)
    fields = dataclasses.replace(spec.sampling, seed=seed).to_request_fields()
    assert identity.hash_with(seed) == request_hash(spec, msgs, fields)
    assert identity.hash_with(seed) == documented_hash(spec, msgs, fields)
    assert RequestIdentity(spec, messages_json(msgs)).hash_with(seed + 1) != identity.hash_with(
        seed
    )
