"""chrF and BLEU rewards: sacrebleu's own numbers on WMT22 samples and hand-made cases."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from toa.config.rewards import BleuRewardConfig, ChrfRewardConfig
from toa.errors import ConfigError
from toa.rewards.base import RewardModel
from toa.rewards.metric import BleuReward, ChrfReward
from toa.types import Message, Prompt, ScoreFailure

sacrebleu = pytest.importorskip("sacrebleu")

WMT22 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "wmt22"


def wmt_rows(name: str) -> list[dict[str, Any]]:
    path = WMT22 / name
    if not path.is_file():
        pytest.skip(f"WMT22 data not found at {path}")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def hypotheses(reference: str, other: str) -> list[str]:
    """Translations of graded quality: exact, word-dropped, reordered, unrelated, empty."""
    words = reference.split()
    return [
        reference,
        " ".join(word for i, word in enumerate(words) if i % 3 != 1),
        " ".join(reversed(words)),
        reference.lower(),
        other,
        "",
    ]


@pytest.mark.parametrize("name", ["de-en-100.jsonl", "zh-en-100.jsonl"])
@pytest.mark.parametrize("word_order", [0, 2])
async def test_chrf_equals_sacrebleu_on_wmt22(name: str, word_order: int) -> None:
    rows = wmt_rows(name)
    reward = ChrfReward(reference_field="en", word_order=word_order)
    for row, other in zip(rows, rows[1:] + rows[:1], strict=True):
        texts = hypotheses(row["en"], other["en"])
        fields = {key: value for key, value in row.items() if key not in ("id", "instruction")}
        prompt = Prompt(str(row["id"]), (Message("user", row["instruction"]),), fields)
        scores = await reward.score(prompt, texts)
        own = [
            sacrebleu.sentence_chrf(text, [row["en"]], word_order=word_order).score
            for text in texts
        ]
        assert scores == own
        assert scores[0] == 100.0
    await reward.aclose()


@pytest.mark.parametrize("name", ["de-en-100.jsonl", "zh-en-100.jsonl"])
async def test_bleu_equals_sacrebleu_on_wmt22(name: str) -> None:
    rows = wmt_rows(name)
    reward = BleuReward(reference_field="en")
    for row, other in zip(rows, rows[1:] + rows[:1], strict=True):
        texts = hypotheses(row["en"], other["en"])
        scores = await reward.score(Prompt.from_text("p", "q", en=row["en"]), texts)
        assert scores == [sacrebleu.sentence_bleu(text, [row["en"]]).score for text in texts]
    await reward.aclose()


async def test_hand_made_examples() -> None:
    chrf, bleu = ChrfReward(), BleuReward()
    prompt = Prompt.from_text("p", "q", reference="The cat sat on the mat.")
    texts = ["The cat sat on the mat.", "The cat sat on a mat.", "Dogs bark loudly.", ""]
    chrf_scores = await chrf.score(prompt, texts)
    bleu_scores = await bleu.score(prompt, texts)
    assert chrf_scores[0] == 100.0
    assert bleu_scores[0] == pytest.approx(100.0)  # sacrebleu's own float: 100.00000000000004
    for scores in (chrf_scores, bleu_scores):
        values = [score for score in scores if isinstance(score, float)]
        assert len(values) == len(texts)
        assert values[0] > values[1] > values[2] >= values[3] == 0.0
        assert all(0.0 <= value <= 100.0 + 1e-9 for value in values)
    assert chrf_scores[1] == pytest.approx(
        sacrebleu.sentence_chrf(texts[1], ["The cat sat on the mat."]).score
    )


async def test_several_references_and_options() -> None:
    refs = ["The cat sat on the mat.", "A cat was sitting on the mat."]
    prompt = Prompt.from_text("p", "q", reference=refs)
    text = "A cat was sitting on the mat."
    assert await ChrfReward().score(prompt, [text]) == [100.0]
    [bleu] = await BleuReward().score(prompt, [text])
    assert bleu == sacrebleu.sentence_bleu(text, refs).score
    assert bleu == pytest.approx(100.0)
    upper = Prompt.from_text("p", "q", reference="THE CAT")
    assert await ChrfReward(lowercase=True).score(upper, ["the cat"]) == [100.0]
    [cased] = await ChrfReward().score(upper, ["the cat"])
    assert isinstance(cased, float)
    assert cased < 100.0
    zh = Prompt.from_text("p", "q", reference="我喜欢猫")
    [char_level] = await BleuReward(tokenize="zh").score(zh, ["我喜欢狗"])
    assert char_level == sacrebleu.sentence_bleu("我喜欢狗", ["我喜欢猫"], tokenize="zh").score


@pytest.mark.parametrize("reward_cls", [ChrfReward, BleuReward])
async def test_missing_reference_is_a_failure_naming_the_field(
    reward_cls: type[ChrfReward] | type[BleuReward],
) -> None:
    reward = reward_cls(reference_field="en")
    extras: list[dict[str, Any]] = [{}, {"en": ""}, {"en": None}, {"en": []}, {"en": ["ok", 3]}]
    for extra in extras:
        scores = await reward.score(Prompt.from_text("row9", "q", **extra), ["a", "b"])
        assert len(scores) == 2
        for score in scores:
            assert isinstance(score, ScoreFailure)
            assert score.error_type == "MissingReference"
            assert "'en'" in score.message
            assert "'row9'" in score.message


async def test_without_sacrebleu_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sacrebleu", None)  # makes `import sacrebleu` fail
    for build in (ChrfReward, BleuReward):
        with pytest.raises(ConfigError, match=re.escape("toa-synth[translation]")):
            build()


def test_configs_validate_and_build() -> None:
    chrf = ChrfRewardConfig.model_validate(
        {"type": "chrf", "reference_field": "en", "word_order": 2}
    )
    bleu = BleuRewardConfig.model_validate({"type": "bleu", "tokenize": "zh"})
    for built, name in ((chrf.build(), "chrf"), (bleu.build(), "bleu")):
        assert isinstance(built, RewardModel)
        assert built.name == name
    for config_cls, bad in (
        (ChrfRewardConfig, {"type": "chrf", "word_order": 3}),
        (ChrfRewardConfig, {"type": "chrf", "char_order": 0}),
        (ChrfRewardConfig, {"type": "chrf", "reference_field": ""}),
        (ChrfRewardConfig, {"type": "chrf", "extra": True}),
        (BleuRewardConfig, {"type": "bleu", "tokenize": "ja-mecab"}),
        (BleuRewardConfig, {"type": "chrf"}),
    ):
        with pytest.raises(ValidationError):
            config_cls.model_validate(bad)
