"""The verify reward: GSM8K gold answers, answer styles, MATH equivalences, failures, config."""

from __future__ import annotations

import json
import random
import re
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import toa.rewards.verify as verify_module
from toa.config.rewards import VerifyRewardConfig
from toa.errors import ConfigError
from toa.rewards.base import RewardModel
from toa.rewards.verify import (
    VerifyReward,
    extract_boxed,
    extract_gsm8k_answer,
    extract_math_answer,
    parse_number,
)
from toa.types import Prompt, ScoreFailure

GSM8K = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "gsm8k" / "test.jsonl"


def gsm8k_rows() -> list[dict[str, Any]]:
    if not GSM8K.is_file():
        pytest.skip(f"GSM8K data not found at {GSM8K}")
    return [json.loads(line) for line in GSM8K.read_text(encoding="utf-8").splitlines() if line]


def row_prompt(index: int, gold: object, field: str = "gold_answer") -> Prompt:
    return Prompt.from_text(str(index), "question", **{field: gold})


def hash_value(gold_response: str) -> Fraction:
    """The dataset's own answer: the text after the last '####', read independently of verify."""
    return Fraction(gold_response.rsplit("####", 1)[1].strip().replace(",", ""))


@pytest.fixture
async def reward() -> AsyncIterator[VerifyReward]:
    built = VerifyReward(mode="gsm8k")
    yield built
    await built.aclose()


async def test_every_gsm8k_gold_response_verifies_against_its_own_gold(
    reward: VerifyReward,
) -> None:
    rows = gsm8k_rows()
    mismatched = []
    for index, row in enumerate(rows):
        [score] = await reward.score(row_prompt(index, row["gold_answer"]), [row["gold_response"]])
        consistent = hash_value(row["gold_response"]) == Fraction(row["gold_answer"])
        assert score == (1.0 if consistent else 0.0), (row["id"], row["gold_answer"])
        if not consistent:
            mismatched.append(row["id"])
    # Known data defects: two rows whose gold_answer lost the minus sign of '#### -3' / '#### -10'.
    assert len(mismatched) <= 2, mismatched


async def test_a_shuffled_gold_answer_does_not_verify(reward: VerifyReward) -> None:
    rows = gsm8k_rows()
    order = list(range(len(rows)))
    random.Random(5).shuffle(order)
    coincidences = 0
    for index, other in zip(range(len(rows)), order[1:] + order[:1], strict=True):
        if other == index:
            continue
        response, gold = rows[index]["gold_response"], rows[other]["gold_answer"]
        [score] = await reward.score(row_prompt(index, gold), [response])
        same_number = hash_value(response) == Fraction(gold)
        assert score == (1.0 if same_number else 0.0), (rows[index]["id"], gold)
        coincidences += same_number
    assert coincidences < len(rows) // 20  # equal answers to different problems are rare


GSM8K_STYLES = [
    ("Final answer: 42", "42", 1.0),
    ("final answer: $1,128", "1128", 1.0),
    ("FINAL ANSWER:\n\n18 dollars", "18", 1.0),
    ("So she has 3 left. The final answer is 18.", "18", 1.0),
    ("The final answer is $\\boxed{18}$.", "18", 1.0),
    ("2 + 3 = <<2+3=5>>5 apples\n#### 5", "5", 1.0),
    ("#### 1,450,000", "1450000", 1.0),
    ("It costs $60.00 in total.", "60", 1.0),
    ("The discount is 25%.", "25", 1.0),
    ("She ends at -3 degrees.", "-3", 1.0),
    ("2 - 8 = -6, then -6 + 3 = -3", "-3", 1.0),
    ("Half of it: 0.5", ".5", 1.0),
    ("The answer is 7. Check: 7 * 2 = 14", "7", 1.0),
    ("He walks 3.50 miles", "3.5", 1.0),
    ("Final answer: 41", "42", 0.0),
    ("I think it is 42, final answer: 43", "42", 0.0),
    ("Final answer: I am not sure, maybe 12 or 13?", "42", 0.0),
    ("Final answer: none of these", "42", 0.0),
    ("I cannot solve this.", "42", 0.0),
    ("", "42", 0.0),
    ("We get 1,128 minutes", "1,128", 1.0),
    ("Answer: first 3 + 4 = 7, then 7 + 5 = 12 in total", "12", 1.0),
]


@pytest.mark.parametrize(("response", "gold", "score"), GSM8K_STYLES)
async def test_gsm8k_answer_styles(
    reward: VerifyReward, response: str, gold: str, score: float
) -> None:
    assert await reward.score(row_prompt(0, gold), [response]) == [score]


def test_extraction_helpers() -> None:
    assert extract_gsm8k_answer("18 * 4 = <<18*4=72>>72 minutes") == 72
    assert extract_gsm8k_answer("no digits") is None
    assert parse_number("\\$1{,}000") == 1000
    assert parse_number("5\\text{ cm}") == 5
    assert parse_number("x = \\frac{3}{4}") == Fraction(3, 4)
    assert parse_number("2, 3") is None
    assert extract_boxed("a \\boxed{1} then \\boxed{\\frac{1}{\\sqrt{2}}} end") == (
        "\\frac{1}{\\sqrt{2}}"
    )
    assert extract_boxed("\\boxed{\\frac{1}{2}") is None
    assert extract_math_answer("so \\fbox{ 7 }") == "7"
    assert extract_math_answer("Final answer: $\\frac{1}{2}$.\nDone") == "\\frac{1}{2}"
    assert extract_math_answer("The answer is $\\pi$.") == "\\pi"
    assert extract_math_answer("nothing here") is None


NUMERIC_MATH = [
    ("\\frac{1}{2}", "0.5", 1.0),
    ("\\dfrac{3}{4}", "3/4", 1.0),
    ("\\$1{,}000", "1000", 1.0),
    ("7", "7.0", 1.0),
    ("7", "8", 0.0),
]


@pytest.mark.parametrize(("gold", "answer", "score"), NUMERIC_MATH)
async def test_plain_numbers_in_math_mode_need_no_extra(
    gold: str, answer: str, score: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verify_module, "_math_verify_installed", lambda: False)
    plain = VerifyReward(mode="auto")
    assert await plain.score(row_prompt(0, gold), [f"so \\boxed{{{answer}}}"]) == [score]
    await plain.aclose()


MATH_PAIRS = [
    ("\\frac{1}{2}", "0.5", True),
    ("\\dfrac{3}{4}", "\\frac34", True),
    ("\\left( 1, 2 \\right)", "(1,2)", True),
    ("10\\%", "10", True),
    ("10\\%", "0.1", True),
    ("90^\\circ", "90", True),
    ("5\\text{ cm}", "5", True),
    ("\\frac{\\sqrt{3}}{2}", "\\sqrt{3}/2", True),
    ("3\\sqrt{2}", "\\sqrt{18}", True),
    ("x^2+2x+1", "(x+1)^2", True),
    ("1\\!000", "1000", True),
    ("\\{1,2\\}", "\\{2,1\\}", True),
    ("-\\frac{1}{2}", "-0.5", True),
    ("\\boxed{\\frac{2}{3}}", "\\frac{4}{6}", True),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),
    ("\\text{(B)}", "B", True),
    ("\\frac{1}{3}", "0.33", False),
    ("\\frac{1}{2}", "-0.5", False),
    ("[1,2)", "(1,2]", False),
    ("2\\pi", "6.28", False),
    ("\\infty", "-\\infty", False),
    ("\\sqrt{2}", "2", False),
    ("x^2", "2x", False),
    ("\\frac{1}{2}", "\\frac{1}{3}", False),
]


async def test_math_equivalences() -> None:
    pytest.importorskip("math_verify")
    math_reward = VerifyReward(mode="math")
    wrong = []
    for index, (gold, answer, equal) in enumerate(MATH_PAIRS):
        response = f"Working... so the answer is $\\boxed{{{answer}}}$."
        [score] = await math_reward.score(row_prompt(index, gold), [response])
        if score != (1.0 if equal else 0.0):
            wrong.append((gold, answer, equal, score))
    await math_reward.aclose()
    assert not wrong


async def test_auto_mode_routes_latex_golds_to_math() -> None:
    pytest.importorskip("math_verify")
    auto = VerifyReward(correct=2.0, incorrect=-1.0)
    scores = await auto.score(
        row_prompt(0, "\\frac{\\pi}{4}"), ["\\boxed{\\pi/4}", "\\boxed{0.78}", "no box, 0.785"]
    )
    assert scores == [2.0, -1.0, -1.0]
    assert await auto.score(row_prompt(1, "12"), ["We get 12 apples."]) == [2.0]
    await auto.aclose()


async def test_a_timed_out_comparison_is_a_failure_not_a_zero() -> None:
    pytest.importorskip("math_verify")
    slow = VerifyReward(mode="math", timeout_s=1)
    good, hard = await slow.score(row_prompt(0, "1"), ["\\boxed{1.0}", "\\boxed{9^{999999999}}"])
    assert good == 1.0
    assert isinstance(hard, ScoreFailure)
    assert hard.error_type == "VerifyTimeout"
    await slow.aclose()


async def test_a_stuck_worker_is_killed_and_restarted() -> None:
    pytest.importorskip("math_verify")
    math_reward = VerifyReward(mode="math")
    math_reward._worker._hard_limit_s = 0.001  # no worker answers that fast
    pi_half = row_prompt(0, "\\frac{\\pi}{2}")
    [score] = await math_reward.score(pi_half, ["\\boxed{\\pi/2}"])
    assert isinstance(score, ScoreFailure)
    assert score.error_type == "VerifyWorkerError"
    math_reward._worker._hard_limit_s = None
    assert await math_reward.score(pi_half, ["\\boxed{\\pi/2}"]) == [1.0]
    await math_reward.aclose()
    [closed] = await math_reward.score(row_prompt(0, "\\pi"), ["\\boxed{\\pi}"])
    assert isinstance(closed, ScoreFailure)
    assert "closed" in closed.message


async def test_missing_gold_is_a_failure_naming_the_field(reward: VerifyReward) -> None:
    for extra in ({}, {"gold_answer": None}, {"gold_answer": "  "}, {"gold_answer": [1]}):
        prompt = Prompt.from_text("p7", "question", **extra)
        scores = await reward.score(prompt, ["Final answer: 1", "2"])
        assert len(scores) == 2
        for score in scores:
            assert isinstance(score, ScoreFailure)
            assert score.error_type == "MissingGoldAnswer"
            assert "'gold_answer'" in score.message
            assert "'p7'" in score.message


async def test_custom_gold_field_numeric_gold_and_values() -> None:
    custom = VerifyReward(mode="gsm8k", gold_field="answer", correct=5.0, incorrect=-5.0)
    assert await custom.score(row_prompt(0, 18, "answer"), ["#### 18", "#### 19", "??"]) == [
        5.0,
        -5.0,
        -5.0,
    ]
    [failure] = await custom.score(row_prompt(0, "18"), ["#### 18"])  # wrong field
    assert isinstance(failure, ScoreFailure)
    assert "'answer'" in failure.message
    [bad_gold] = await custom.score(row_prompt(0, "eighteen", "answer"), ["18"])
    assert isinstance(bad_gold, ScoreFailure)
    assert bad_gold.error_type == "InvalidGoldAnswer"
    await custom.aclose()


async def test_without_math_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify_module, "_math_verify_installed", lambda: False)
    with pytest.raises(ConfigError, match=re.escape("toa-synth[math]")):
        VerifyReward(mode="math")
    auto = VerifyReward()
    assert await auto.score(row_prompt(0, "12"), ["Final answer: 12"]) == [1.0]
    [latex] = await auto.score(row_prompt(0, "\\frac{\\pi}{2}"), ["\\boxed{\\pi/2}"])
    assert isinstance(latex, ScoreFailure)
    assert latex.error_type == "MissingDependency"
    await auto.aclose()


def test_config_validates_and_builds() -> None:
    config = VerifyRewardConfig.model_validate({"type": "verify", "mode": "gsm8k", "correct": 2})
    assert config.gold_field == "gold_answer"
    built = config.build()
    assert isinstance(built, VerifyReward)
    assert isinstance(built, RewardModel)
    assert built.name == "verify"
    with pytest.raises(ValidationError):
        config.mode = "math"  # type: ignore[misc]
    for bad in (
        {"type": "verify", "extra": 1},
        {"type": "verify", "mode": "algebra"},
        {"type": "verify", "correct": 0.0},
        {"type": "verify", "correct": float("nan")},
        {"type": "verify", "timeout_s": 0},
        {"type": "verify", "gold_field": ""},
        {"type": "judge"},
    ):
        with pytest.raises(ValidationError):
            VerifyRewardConfig.model_validate(bad)
