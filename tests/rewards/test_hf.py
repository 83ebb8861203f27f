"""The `hf` reward against tiny randomly initialised models built and saved here (no hub access).

Each model directory is made in a temporary folder: a byte-level BPE tokenizer trained on a few
strings (with a chat template written here), and a Llama or BERT sequence classifier with fixed
random weights. Scores therefore mean nothing; what is checked is the plumbing: determinism,
batched == one at a time, failures in place, errors at build, one model on one thread.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from pydantic import ValidationError  # noqa: E402

from toa.config.rewards import HFRewardConfig  # noqa: E402
from toa.errors import ConfigError  # noqa: E402
from toa.rewards.batching import BatchingReward  # noqa: E402
from toa.rewards.hf import HFRewardModel  # noqa: E402
from toa.types import Message, Prompt, ScoreFailure  # noqa: E402

# Gemma-like: rejects empty turns, as real templates reject malformed conversations.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['content'] == '' %}{{ raise_exception('empty ' + m['role'] + ' turn') }}{% endif %}"
    "<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}{% endfor %}"
)
CORPUS = [
    "What is two plus two? The answer is four.",
    "Translate to French: the cat sits on the mat. Le chat est assis sur le tapis.",
    "def add(a, b): return a + b  # a small function",
    "The quick brown fox jumps over the lazy dog 0123456789.",
]
PROMPT = Prompt.from_text("p1", "What is two plus two?")
RESPONSES = [
    "4",
    "The answer is four.",
    "Two plus two is four, because adding two to two gives four.",
    "five",
    "I think it is 4, but let me check: 2 + 2 = 4. Yes, the answer is four.",
    "four",
    "4.0",
    "It is four. " * 5,
    "2+2=4",
]
ARMO_CODE = '''
from dataclasses import dataclass

import torch
from transformers import LlamaForSequenceClassification
from transformers.utils import ModelOutput


@dataclass
class ToyRewardOutput(ModelOutput):
    score: torch.FloatTensor | None = None
    rewards: torch.FloatTensor | None = None


class ToyArmoRM(LlamaForSequenceClassification):
    """ArmoRM-shaped: per-objective rewards and a `score` field (here their mean)."""

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        rewards = super().forward(input_ids=input_ids, attention_mask=attention_mask).logits
        return ToyRewardOutput(score=rewards.mean(dim=-1, keepdim=True), rewards=rewards)
'''


def make_tokenizer(*, chat_template: str | None, pair_template: bool = False) -> Any:
    """A byte-level BPE tokenizer (vocabulary 320) with <pad>, <s>, </s>, <unk>."""
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    raw = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=specials,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(CORPUS, trainer)
    if pair_template:
        raw.post_processor = tokenizers.processors.TemplateProcessing(
            single="<s> $A </s>",
            pair="<s> $A </s> $B:1 </s>:1",
            special_tokens=[("<s>", 1), ("</s>", 2)],
        )
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=raw,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )
    if chat_template is not None:
        tok.chat_template = chat_template
    return tok


def save_llama(path: Path, *, num_labels: int = 1, pad_id: int | None = None) -> Path:
    """A 2-layer Llama classifier (hidden 64) with its tokenizer, saved to `path`.

    `pad_id` overrides the model config's pad_token_id (default: the tokenizer's <pad>).
    """
    tok = make_tokenizer(chat_template=CHAT_TEMPLATE)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        num_labels=num_labels,
        pad_token_id=tok.pad_token_id if pad_id is None else pad_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    transformers.LlamaForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def save_bert(path: Path) -> Path:
    """A 2-layer BERT cross-encoder without chat template: scored as (prompt, response) pairs."""
    tok = make_tokenizer(chat_template=None, pair_template=True)
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=512,
        num_labels=1,
        pad_token_id=tok.pad_token_id,
    )
    transformers.BertForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_llama(tmp_path_factory.mktemp("llama"))


def hf(path: Path, **options: Any) -> HFRewardModel:
    return HFRewardConfig(type="hf", path=str(path), device="cpu", **options).build()


async def scores_of(path: Path, prompt: Prompt, responses: list[str], **options: Any) -> list[Any]:
    reward = hf(path, **options)
    try:
        return await reward.score(prompt, responses)
    finally:
        await reward.aclose()


async def test_scores_are_deterministic_floats(llama_dir: Path) -> None:
    first = await scores_of(llama_dir, PROMPT, RESPONSES)
    second = await scores_of(llama_dir, PROMPT, RESPONSES)
    assert all(isinstance(s, float) for s in first)
    assert first == second
    assert len(set(first)) == len(first)  # different responses, different scores


async def test_batched_equals_one_at_a_time(llama_dir: Path) -> None:
    batched = await scores_of(llama_dir, PROMPT, RESPONSES, batch_size=4)
    reward = hf(llama_dir, batch_size=1)
    try:
        alone = [(await reward.score(PROMPT, [r]))[0] for r in RESPONSES]
        assert reward.forward_passes == len(RESPONSES)
    finally:
        await reward.aclose()
    # Right padding keeps positions; only matmul shapes differ, hence rounding-level differences.
    assert torch.allclose(torch.tensor(batched), torch.tensor(alone), rtol=1e-5, atol=1e-6)


async def test_padding_uses_the_pad_id_the_model_looks_for(tmp_path: Path) -> None:
    path = save_llama(tmp_path / "own-pad", pad_id=3)  # the classifier skips <unk>, not <pad>
    batched = await scores_of(path, PROMPT, RESPONSES, batch_size=16)
    alone = [(await scores_of(path, PROMPT, [r]))[0] for r in RESPONSES[:3]]
    assert batched[:3] == pytest.approx(alone, rel=1e-5, abs=1e-6)


async def test_score_batch_shares_forward_passes_across_prompts(llama_dir: Path) -> None:
    other = Prompt("p2", (Message("system", "Be brief."), Message("user", "Name a colour.")))
    items = [(PROMPT, r) for r in RESPONSES[:4]] + [(other, "red"), (other, "blue")]
    reward = hf(llama_dir, batch_size=16)
    try:
        together = await reward.score_batch(items)
        assert reward.forward_passes == 1
        apart = await reward.score(PROMPT, RESPONSES[:4]) + await reward.score(
            other, ["red", "blue"]
        )
    finally:
        await reward.aclose()
    assert torch.allclose(torch.tensor(together), torch.tensor(apart), rtol=1e-5, atol=1e-6)


async def test_a_response_the_template_rejects_fails_in_place(llama_dir: Path) -> None:
    responses = ["four", "", "4"]
    scores = await scores_of(llama_dir, PROMPT, responses)
    assert isinstance(scores[1], ScoreFailure)
    assert "empty assistant turn" in scores[1].message
    good = await scores_of(llama_dir, PROMPT, ["four", "4"])
    assert [scores[0], scores[2]] == pytest.approx(good, rel=1e-5)


async def test_truncation_keeps_the_first_max_length_tokens(llama_dir: Path) -> None:
    base = "It is four. " * 20
    scores = await scores_of(llama_dir, PROMPT, [base, base + "No, it is five."], max_length=32)
    assert scores[0] == scores[1]


async def test_pair_input_for_a_model_without_chat_template(tmp_path: Path) -> None:
    path = save_bert(tmp_path / "bert")
    batched = await scores_of(path, PROMPT, RESPONSES, batch_size=8)
    alone = [(await scores_of(path, PROMPT, [r]))[0] for r in RESPONSES[:3]]
    assert batched[:3] == pytest.approx(alone, rel=1e-5, abs=1e-6)
    with pytest.raises(ConfigError, match="no chat template"):
        hf(path, input_format="chat_template")


async def test_label_index_and_a_wrong_output_field(tmp_path: Path) -> None:
    path = save_llama(tmp_path / "three", num_labels=3)
    columns = [await scores_of(path, PROMPT, RESPONSES[:3], label_index=i) for i in range(3)]
    assert columns[0] != columns[1] != columns[2]
    with pytest.raises(ConfigError, match="label_index 3 is out of range"):
        hf(path, label_index=3)  # the probe forward pass at build catches it
    with pytest.raises(ConfigError, match="no field 'score'"):
        hf(path, output_field="score")


@pytest.fixture
def modules_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Remote code is copied to a private module cache, not the user's ~/.cache."""
    monkeypatch.setattr(
        transformers.dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "modules")
    )
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name in [n for n in sys.modules if n.startswith("transformers_modules")]:
        del sys.modules[name]


@pytest.mark.usefixtures("modules_cache")
async def test_remote_code_needs_trust_and_output_field(tmp_path: Path) -> None:
    path = save_llama(tmp_path / "armo", num_labels=3)
    (path / "modeling_toy.py").write_text(ARMO_CODE, encoding="utf-8")
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_toy.ToyArmoRM"}
    (path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ConfigError, match="ships its own code"):
        hf(path)
    armo = await scores_of(
        path, PROMPT, RESPONSES[:3], trust_remote_code=True, output_field="score"
    )
    per_label = [
        await scores_of(
            path,
            PROMPT,
            RESPONSES[:3],
            trust_remote_code=True,
            output_field="rewards",
            label_index=i,
        )
        for i in range(3)
    ]
    assert armo == pytest.approx([sum(col) / 3 for col in zip(*per_label, strict=True)], rel=1e-5)


async def test_many_concurrent_callers_share_one_model_on_one_thread(
    llama_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = 0
    original = transformers.AutoModelForSequenceClassification.from_pretrained

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal loads
        loads += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(
        transformers.AutoModelForSequenceClassification, "from_pretrained", counting
    )
    threads: set[int] = set()

    def hook(module: Any, args: Any, output: Any) -> None:
        if isinstance(module, transformers.LlamaForSequenceClassification):
            threads.add(threading.get_ident())

    reward = hf(llama_dir, batch_size=8)
    handle = torch.nn.modules.module.register_module_forward_hook(hook)  # after the build probe
    try:
        calls = [reward.score(PROMPT, [r, r + "!"]) for r in RESPONSES * 4]
        results = await asyncio.gather(*calls)
    finally:
        handle.remove()
        await reward.aclose()
    assert loads == 1
    assert len(threads) == 1
    assert threading.get_ident() not in threads
    assert reward.forward_passes == len(calls)
    assert all(len(r) == 2 and all(isinstance(s, float) for s in r) for r in results)
    assert results[0] == results[len(RESPONSES)]  # the same request, the same scores


async def test_the_batcher_merges_concurrent_callers_into_few_passes(llama_dir: Path) -> None:
    direct = await scores_of(llama_dir, PROMPT, RESPONSES)
    reward = hf(llama_dir, batch_size=64)
    batcher = BatchingReward(reward, max_batch=64, max_wait_ms=50)
    try:
        results = await asyncio.gather(*(batcher.score(PROMPT, [r]) for r in RESPONSES * 4))
    finally:
        await batcher.aclose()
    assert reward.forward_passes <= 2
    got = [scores[0] for scores in results]
    assert torch.allclose(torch.tensor(got), torch.tensor(direct * 4), rtol=1e-5, atol=1e-6)


async def test_a_closed_reward_fails_calls_and_closes_once(llama_dir: Path) -> None:
    reward = hf(llama_dir)
    await reward.aclose()
    await reward.aclose()
    (after,) = await reward.score(PROMPT, ["4"])
    assert isinstance(after, ScoreFailure)
    assert "closed" in after.message
    assert await reward.score(PROMPT, []) == []


def test_build_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a local model directory"):
        hf(tmp_path / "vanished")
    with pytest.raises(ConfigError, match=r"looks like a hub id.*hf download Skywork/RM"):
        HFRewardConfig(type="hf", path="Skywork/RM").build()
    with pytest.raises(ConfigError, match=r"cannot read .*config\.json"):
        hf(tmp_path)
    with pytest.raises(ValidationError, match="device must be"):
        HFRewardConfig(type="hf", path=str(tmp_path), device="gpu")
    with pytest.raises(ValidationError, match="Extra inputs"):
        HFRewardConfig.model_validate({"type": "hf", "path": "x", "revision": "main"})


def test_a_model_that_cannot_load_fails_at_build(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot load the model"):
        hf(tmp_path)


def test_missing_extra_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ConfigError, match=r"pip install 'toa-synth\[hf\]'"):
        hf(tmp_path)
