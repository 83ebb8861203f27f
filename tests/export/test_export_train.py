"""The exported files train: 2 steps of TRL's SFTTrainer and DPOTrainer on a tiny local model.

Nothing is downloaded: the tokenizer is a `tokenizers` word-level model trained here on the
exported text, wrapped with a chat template written here, and the model is a randomly initialised
two-layer Llama built from a config. Runs on CPU in seconds. Needs the `train` extra.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
from export_helpers import read_jsonl

from toa.export import DPOOptions, SFTOptions, export_run

pytestmark = pytest.mark.train

SPECIALS = ["<unk>", "<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def conversation_texts(rows: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for row in rows for value in row.values() if isinstance(value, list)
            for m in value]  # fmt: skip


def tiny_tokenizer(texts: list[str]) -> Any:
    """A word-level tokenizer trained on `texts`, with our chat template."""
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    model = tokenizers.Tokenizer(tokenizers.models.WordLevel(unk_token="<unk>"))
    model.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    model.train_from_iterator(texts, tokenizers.trainers.WordLevelTrainer(special_tokens=SPECIALS))
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=model,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_model(tokenizer: Any) -> Any:
    """A randomly initialised 2-layer Llama, hidden size 16 (about 10k parameters + embeddings)."""
    transformers = pytest.importorskip("transformers")
    transformers.set_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return transformers.LlamaForCausalLM(config)


def common_args(tmp_path: Path) -> dict[str, Any]:
    return {
        "output_dir": str(tmp_path / "trainer"),
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "max_length": 128,
        "learning_rate": 1e-3,
        "report_to": [],
        "save_strategy": "no",
        "logging_strategy": "no",
        "disable_tqdm": True,
        "use_cpu": True,
        "bf16": False,
        "seed": 0,
    }


@pytest.fixture
def trl() -> Any:
    pytest.importorskip("torch")
    pytest.importorskip("datasets")
    return pytest.importorskip("trl")


@pytest.mark.parametrize(
    ("layout", "name"), [("messages", "sft.jsonl"), ("prompt_completion", "sft")]
)
def test_sft_trainer_runs_two_steps_on_the_export(
    engine_run_dir: Path, tmp_path: Path, trl: Any, layout: Any, name: str
) -> None:
    datasets = pytest.importorskip("datasets")
    out = tmp_path / name
    export_run(engine_run_dir, format="sft", out=out, options=SFTOptions(layout=layout))
    if out.suffix == ".jsonl":
        dataset = datasets.load_dataset(
            "json", data_files=str(out), split="train", cache_dir=str(tmp_path / "cache")
        )
    else:
        dataset = datasets.load_from_disk(str(out))
    assert trl.data_utils.is_conversational(dataset[0])
    tokenizer = tiny_tokenizer(conversation_texts(dataset.to_list()))
    trainer = trl.SFTTrainer(
        model=tiny_model(tokenizer),
        args=trl.SFTConfig(**common_args(tmp_path)),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    output = trainer.train()
    assert output.global_step == 2
    assert math.isfinite(output.training_loss)


def test_dpo_trainer_runs_two_steps_on_the_export(
    engine_run_dir: Path, tmp_path: Path, trl: Any
) -> None:
    pytest.importorskip("pyarrow")
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "dpo.parquet"
    options = DPOOptions(pairs_per_prompt=2, rejected_rank=2)
    report = export_run(engine_run_dir, format="dpo", out=out, options=options)
    assert report.rows >= 4
    export_run(engine_run_dir, format="dpo", out=tmp_path / "dpo.jsonl", options=options)
    dataset = datasets.load_dataset(
        "parquet", data_files=str(out), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert dataset.to_list() == read_jsonl(tmp_path / "dpo.jsonl")
    assert trl.data_utils.is_conversational(dataset[0])
    tokenizer = tiny_tokenizer(conversation_texts(dataset.to_list()))
    model = tiny_model(tokenizer)
    trainer = trl.DPOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),
        args=trl.DPOConfig(**common_args(tmp_path)),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    output = trainer.train()
    assert output.global_step == 2
    assert math.isfinite(output.training_loss)
