"""The `comet` reward without COMET weights: inputs, checkpoint layout, errors, call shapes.

No registry ships COMET weights, and unbabel-comet 2.2.7 pins transformers<5 and numpy<2, so
the package is usually absent. The adapter's own logic is tested here directly; its calls into
comet are tested against `FakeComet`, a stand-in with the signatures of unbabel-comet 2.2.7
(``comet.load_from_checkpoint(checkpoint_path, reload_hparams, strict, local_files_only)`` and
``CometModel.predict(samples, batch_size, gpus, devices, mc_dropout, progress_bar, accelerator,
num_workers, length_batching)`` returning a ``Prediction`` with ``scores``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from toa.config.rewards import CometRewardConfig
from toa.errors import ConfigError
from toa.rewards.batching import BatchingReward
from toa.rewards.comet import build_sample, resolve_checkpoint
from toa.types import Prompt, ScoreFailure

WMT = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "wmt22" / "de-en-100.jsonl"
ROW = {"source": "Der Hund bellt.", "reference": "The dog barks."}


def prompt(id: str = "p1", **extra: Any) -> Prompt:
    return Prompt.from_text(id, "Translate into English: Der Hund bellt.", **extra)


def config(path: Path | str = "unused", **options: Any) -> CometRewardConfig:
    return CometRewardConfig(type="comet", path=str(path), device="cpu", **options)


def comet_dir(root: Path) -> Path:
    """The layout of a downloaded COMET model: hparams.yaml and checkpoints/model.ckpt."""
    (root / "checkpoints").mkdir(parents=True)
    (root / "checkpoints" / "model.ckpt").write_bytes(b"not real weights")
    (root / "hparams.yaml").write_text("class_identifier: referenceless_regression_metric\n")
    return root


class Prediction(dict[str, Any]):
    """comet.models.utils.Prediction is a ModelOutput: a dict with attribute access."""

    def __getattr__(self, name: str) -> Any:
        return self[name]


class FakeCometModel:
    """Scores len(mt) / 100 (+ 1 when a reference is given) and records each predict call."""

    def __init__(self, requires_references: bool) -> None:
        self._requires = requires_references
        self.calls: list[dict[str, Any]] = []
        self.evaluated = False

    def eval(self) -> FakeCometModel:
        self.evaluated = True
        return self

    def requires_references(self) -> bool:
        return self._requires

    def predict(
        self,
        samples: list[dict[str, str]],
        batch_size: int = 16,
        gpus: int = 1,
        devices: Any = None,
        mc_dropout: int = 0,
        progress_bar: bool = True,
        accelerator: str = "auto",
        num_workers: int | None = None,
        length_batching: bool = True,
    ) -> Prediction:
        self.calls.append({"samples": samples, "batch_size": batch_size, "gpus": gpus})
        assert not progress_bar
        scores = [len(s["mt"]) / 100 + (1.0 if "ref" in s else 0.0) for s in samples]
        return Prediction(scores=scores, system_score=sum(scores) / len(scores))


@pytest.fixture
def fake_comet(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """Installs a `comet` module whose load_from_checkpoint returns a `FakeCometModel`."""
    state = types.SimpleNamespace(model=None, requires_references=False, loads=[], error=None)

    def load_from_checkpoint(
        checkpoint_path: str,
        reload_hparams: bool = False,
        strict: bool = False,
        local_files_only: bool = False,
    ) -> FakeCometModel:
        state.loads.append({"path": checkpoint_path, "local_files_only": local_files_only})
        if state.error is not None:
            raise state.error
        state.model = FakeCometModel(state.requires_references)
        return state.model

    module = types.ModuleType("comet")
    module.load_from_checkpoint = load_from_checkpoint  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "comet", module)
    return state


def test_reference_free_and_reference_based_samples() -> None:
    kiwi = build_sample(config(), False, prompt(**ROW), "The dog is barking.")
    assert kiwi == {"src": "Der Hund bellt.", "mt": "The dog is barking."}
    comet22 = build_sample(config(), True, prompt(**ROW), "The dog is barking.")
    assert comet22 == {
        "src": "Der Hund bellt.",
        "mt": "The dog is barking.",
        "ref": "The dog barks.",
    }


def test_the_prompt_text_as_source() -> None:
    sample = build_sample(config(source_field=None), False, prompt(), "x")
    assert sample == {"src": "Translate into English: Der Hund bellt.", "mt": "x"}


def test_missing_inputs_fail_the_response_and_name_the_field() -> None:
    no_source = build_sample(config(), False, prompt(reference="r"), "x")
    assert isinstance(no_source, ScoreFailure)
    assert no_source.error_type == "MissingSource"
    assert "'source'" in no_source.message
    assert "'p1'" in no_source.message
    no_reference = build_sample(config(), True, prompt(source="s"), "x")
    assert isinstance(no_reference, ScoreFailure)
    assert no_reference.error_type == "MissingReference"
    bad_reference = build_sample(config(), True, prompt(source="s", reference=["r"]), "x")
    assert isinstance(bad_reference, ScoreFailure)
    assert "is a list, not a string" in bad_reference.message


def test_wmt22_rows_map_to_comet_samples() -> None:
    if not WMT.is_file():
        pytest.skip(f"WMT22 samples not found at {WMT}")
    settings = config(source_field="de", reference_field="en")
    rows = [json.loads(line) for line in WMT.read_text(encoding="utf-8").splitlines() if line]
    assert len(rows) == 100
    for row in rows:
        row_prompt = Prompt.from_text(
            str(row["id"]), row["instruction"], de=row["de"], en=row["en"]
        )
        sample = build_sample(settings, True, row_prompt, "a translation")
        assert sample == {"src": row["de"], "mt": "a translation", "ref": row["en"]}


def test_checkpoint_layouts(tmp_path: Path) -> None:
    root = comet_dir(tmp_path / "wmt22-cometkiwi-da")
    checkpoint = root / "checkpoints" / "model.ckpt"
    assert resolve_checkpoint(str(root)) == checkpoint
    assert resolve_checkpoint(str(checkpoint)) == checkpoint


def test_checkpoint_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no checkpoint at .*vanished"):
        resolve_checkpoint(str(tmp_path / "vanished"))
    with pytest.raises(
        ConfigError, match=r"looks like a hub id.*hf download Unbabel/wmt22-comet-da"
    ):
        resolve_checkpoint("Unbabel/wmt22-comet-da")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "model.ckpt").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"hparams\.yaml is missing"):
        resolve_checkpoint(str(tmp_path))


def test_missing_package_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "comet", None)
    with pytest.raises(ConfigError, match=r"unbabel-comet: pip install 'toa-synth\[comet\]'"):
        config(comet_dir(tmp_path)).build()


def test_config_is_strict() -> None:
    with pytest.raises(ValueError, match="Extra inputs"):
        CometRewardConfig.model_validate({"type": "comet", "path": "x", "gpus": 1})
    with pytest.raises(ValueError, match="batch_size"):
        CometRewardConfig.model_validate({"type": "comet", "path": "x", "batch_size": 0})


async def test_kiwi_scores_in_order_with_failures_in_place(
    tmp_path: Path, fake_comet: types.SimpleNamespace
) -> None:
    reward = config(comet_dir(tmp_path), batch_size=8).build()
    try:
        assert fake_comet.loads == [
            {"path": str(tmp_path / "checkpoints" / "model.ckpt"), "local_files_only": True}
        ]
        assert fake_comet.model.evaluated
        assert not reward.uses_reference
        items = [(prompt(**ROW), "abc"), (prompt("p2"), "no source"), (prompt(**ROW), "abcdef")]
        scores = await reward.score_batch(items)
    finally:
        await reward.aclose()
    assert scores[0] == pytest.approx(0.03)
    assert isinstance(scores[1], ScoreFailure)
    assert scores[2] == pytest.approx(0.06)
    (call,) = fake_comet.model.calls
    assert call["batch_size"] == 8
    assert call["gpus"] == 0
    assert [s["mt"] for s in call["samples"]] == ["abc", "abcdef"]


async def test_reference_modes(tmp_path: Path, fake_comet: types.SimpleNamespace) -> None:
    path = comet_dir(tmp_path)
    fake_comet.requires_references = True
    with pytest.raises(ConfigError, match="requires references"):
        config(path, reference="none").build()
    reward = config(path).build()
    assert reward.uses_reference
    with_ref, without = await reward.score_batch([(prompt(**ROW), "ab"), (prompt(source="s"), "x")])
    await reward.aclose()
    assert with_ref == pytest.approx(1.02)
    assert isinstance(without, ScoreFailure)
    fake_comet.requires_references = False
    xcomet = config(path, reference="required").build()  # optional references, used when asked
    assert xcomet.uses_reference
    await xcomet.aclose()


async def test_a_checkpoint_that_cannot_load_fails_at_build(
    tmp_path: Path, fake_comet: types.SimpleNamespace
) -> None:
    fake_comet.error = OSError("xlm-roberta-large is not in the cache")
    with pytest.raises(ConfigError, match=r"cannot load .*local Hugging Face cache"):
        config(comet_dir(tmp_path)).build()


async def test_concurrent_callers_share_predict_calls_through_the_batcher(
    tmp_path: Path, fake_comet: types.SimpleNamespace
) -> None:
    batcher = BatchingReward(config(comet_dir(tmp_path)).build(), max_batch=64, max_wait_ms=20)
    try:
        texts = [f"translation {i}" for i in range(40)]
        results = await asyncio.gather(*(batcher.score(prompt(**ROW), [t]) for t in texts))
    finally:
        await batcher.aclose()
    assert [r[0] for r in results] == pytest.approx([len(t) / 100 for t in texts])
    assert len(fake_comet.model.calls) <= 2


# --- The real library, where it is installed (a separate environment: it pins transformers<5) ---


def save_tiny_comet(root: Path, kind: str) -> Path:
    """A random 2-layer XLM-R encoder and a COMET model of `kind` on it, in COMET's layout.

    kind: ``referenceless_regression_metric`` (QE, like COMET-KIWI) or ``regression_metric``.
    """
    import pytorch_lightning
    import tokenizers
    import torch
    import yaml
    from comet.models import str2model
    from transformers import XLMRobertaConfig, XLMRobertaTokenizerFast

    encoder = root / "tiny-xlmr"
    if not encoder.is_dir():
        raw = tokenizers.Tokenizer(tokenizers.models.Unigram())
        raw.pre_tokenizer = tokenizers.pre_tokenizers.Metaspace()
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        trainer = tokenizers.trainers.UnigramTrainer(
            vocab_size=120, special_tokens=specials, unk_token="<unk>"
        )
        raw.train_from_iterator([*ROW.values(), "Die Katze schläft.", "The cat sleeps."], trainer)
        raw.post_processor = tokenizers.processors.TemplateProcessing(
            single="<s> $A </s>",
            pair="<s> $A </s> </s> $B </s>",
            special_tokens=[("<s>", 0), ("</s>", 2)],
        )
        names = {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>"}
        tok = XLMRobertaTokenizerFast(
            tokenizer_object=raw, unk_token="<unk>", pad_token="<pad>", mask_token="<mask>", **names
        )
        tok.save_pretrained(encoder)
        XLMRobertaConfig(
            vocab_size=len(tok),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=130,
            pad_token_id=1,
        ).save_pretrained(encoder)
    torch.manual_seed(0)
    model = str2model[kind](
        pretrained_model=str(encoder), load_pretrained_weights=False, hidden_sizes=[16]
    )
    directory = root / kind
    (directory / "checkpoints").mkdir(parents=True)
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": pytorch_lightning.__version__,
    }
    torch.save(checkpoint, directory / "checkpoints" / "model.ckpt")
    hparams = {**dict(model.hparams), "class_identifier": kind}
    (directory / "hparams.yaml").write_text(yaml.safe_dump(hparams), encoding="utf-8")
    return directory


# unbabel-comet 2.2.7's stack warns on import (torchmetrics 0.10 uses pkg_resources) and on
# every predict (pytorch-lightning 2.6 touches torch's deprecated LeafSpec).
@pytest.mark.filterwarnings("ignore:pkg_resources is deprecated:UserWarning")
@pytest.mark.filterwarnings("ignore:.*LeafSpec.*is deprecated:FutureWarning")
@pytest.mark.parametrize("kind", ["referenceless_regression_metric", "regression_metric"])
async def test_real_unbabel_comet_on_a_tiny_checkpoint(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    comet = pytest.importorskip("comet")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = save_tiny_comet(tmp_path, kind)
    reward = config(path, batch_size=2).build()
    assert reward.uses_reference == (kind == "regression_metric")
    responses = ["The dog barks.", "The cat sleeps.", "Dog."]
    try:
        ours = await reward.score_batch([(prompt(**ROW), text) for text in responses])
        missing = await reward.score(prompt("p2", source="Die Katze schläft."), ["The cat."])
    finally:
        await reward.aclose()
    direct = comet.load_from_checkpoint(str(path / "checkpoints" / "model.ckpt"))
    samples = [
        build_sample(config(path), reward.uses_reference, prompt(**ROW), t) for t in responses
    ]
    want = direct.predict(samples, batch_size=2, gpus=0, progress_bar=False).scores
    assert ours == pytest.approx(want, rel=1e-5)
    expected_type = ScoreFailure if reward.uses_reference else float  # needs a reference or not
    assert isinstance(missing[0], expected_type)
