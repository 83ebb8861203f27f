"""The combo reward: weighted sums, lexicographic cascades, failures, config and ownership."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from toa.config.rewards import ComboRewardConfig
from toa.rewards.base import RewardModel
from toa.rewards.combo import ComboReward, cascade_score
from toa.rewards.verify import VerifyReward
from toa.types import Prompt, Score, ScoreFailure

PROMPT = Prompt.from_text("p", "question", gold_answer="4")


def floats(scores: Sequence[Score]) -> list[float]:
    """The scores, checked to be numbers (no failure)."""
    assert all(isinstance(score, float) for score in scores), scores
    return [score for score in scores if isinstance(score, float)]


class TableReward:
    """Scores a response by looking it up; a missing response is a failure."""

    def __init__(self, name: str, table: Mapping[str, float], *, raises: bool = False) -> None:
        self.name = name
        self.table = dict(table)
        self.raises = raises
        self.closed = False

    async def score(self, prompt: Prompt, responses: Sequence[str]) -> list[Score]:
        if self.raises:
            raise ConnectionError("judge server down")
        return [
            self.table.get(text, ScoreFailure(f"{self.name} cannot score")) for text in responses
        ]

    async def aclose(self) -> None:
        self.closed = True
        if self.raises:
            raise RuntimeError("close failed")


async def test_weighted_sum() -> None:
    a = TableReward("a", {"x": 1.0, "y": 0.0})
    b = TableReward("b", {"x": 0.5, "y": 2.0})
    combo = ComboReward([a, b], weights=[2.0, 1.0])
    assert combo.name == "sum(a+b)"
    assert await combo.score(PROMPT, ["x", "y"]) == [2.5, 2.0]
    assert await combo.score(PROMPT, []) == []
    await combo.aclose()
    assert a.closed
    assert b.closed


async def test_a_child_failure_fails_the_sum_unless_skipped() -> None:
    a = TableReward("a", {"x": 1.0, "y": 3.0})
    b = TableReward("b", {"x": 2.0})
    strict = ComboReward([a, b], weights=[1.0, 3.0])
    x, y = await strict.score(PROMPT, ["x", "y"])
    assert x == 7.0
    assert isinstance(y, ScoreFailure)
    assert "b: b cannot score" in y.message
    lenient = ComboReward([a, b], weights=[1.0, 3.0], skip_failed=True)
    x, y, z = await lenient.score(PROMPT, ["x", "y", "z"])
    assert x == 7.0
    assert y == 3.0 * 4.0 / 1.0  # a's score, rescaled by W_all / W_ok
    assert isinstance(z, ScoreFailure)  # every child failed


async def test_a_raising_or_miscounting_child_is_recorded() -> None:
    down = TableReward("judge", {}, raises=True)
    combo = ComboReward([TableReward("a", {"x": 1.0}), down], skip_failed=False)
    [score] = await combo.score(PROMPT, ["x"])
    assert isinstance(score, ScoreFailure)
    assert "judge server down" in score.message

    class Short(TableReward):
        async def score(self, prompt: Prompt, responses: Sequence[str]) -> list[Score]:
            return [1.0]

    [first, second] = await ComboReward([Short("short", {})]).score(PROMPT, ["x", "y"])
    assert isinstance(first, ScoreFailure)
    assert isinstance(second, ScoreFailure)


async def test_cascade_is_lexicographic() -> None:
    first = TableReward("verify", {"r1": 1.0, "r2": 1.0, "w1": 0.0, "w2": 0.0})
    second = TableReward("judge", {"r1": 3.0, "r2": 9.0, "w1": 10.0, "w2": -50.0})
    combo = ComboReward([first, second], mode="cascade")
    assert combo.name == "cascade(verify>judge)"
    texts = ["r1", "r2", "w1", "w2"]
    scores = dict(zip(texts, floats(await combo.score(PROMPT, texts)), strict=True))
    assert sorted(texts, key=scores.__getitem__, reverse=True) == ["r2", "r1", "w1", "w2"]
    assert all(1.0 < scores[text] < 1.0 + 1e-3 for text in ("r1", "r2"))
    assert all(0.0 < scores[text] < 1e-3 for text in ("w1", "w2"))


async def test_cascade_failures() -> None:
    first = TableReward("verify", {"a": 1.0, "b": 1.0, "c": 0.0})
    second = TableReward("judge", {"a": 2.0, "c": 9.0})
    strict = ComboReward([first, second], mode="cascade")
    a, b, c, d = await strict.score(PROMPT, ["a", "b", "c", "d"])
    assert isinstance(b, ScoreFailure)
    assert isinstance(d, ScoreFailure)
    lenient = ComboReward([first, second], mode="cascade", skip_failed=True)
    *ranked, d = await lenient.score(PROMPT, ["a", "b", "c", "d"])
    assert isinstance(d, ScoreFailure)  # the first reward decides: it cannot be skipped
    a, b, c = floats(ranked)
    assert a > b > c  # b's failed tie-breaker ranks it last among the 1.0s, above the 0.0
    assert b == 1.0


def test_cascade_score_of_three_levels() -> None:
    eps = 1e-3
    keys = [(1.0, 5.0, 0.0), (1.0, 5.0, 2.0), (1.0, 6.0, -9.0), (0.0, 100.0, 100.0)]
    values = [cascade_score(list(key), eps) for key in keys]
    assert sorted(range(4), key=lambda i: values[i]) == [3, 0, 1, 2]
    assert cascade_score([2.5], eps) == 2.5
    with pytest.raises(ValueError, match="first"):
        cascade_score([None, 1.0], eps)


@given(
    st.lists(st.tuples(st.sampled_from([0.0, 1.0]), st.integers(-100, 100)), min_size=2, max_size=8)
)
def test_cascade_orders_like_tuples(pairs: list[tuple[float, int]]) -> None:
    scores = [cascade_score([first, float(second)], 1e-3) for first, second in pairs]
    for i, left in enumerate(pairs):
        for j, right in enumerate(pairs):
            if left < right:
                assert scores[i] < scores[j]
            elif left == right:
                assert scores[i] == scores[j]


async def test_verify_then_judge_with_a_real_verify() -> None:
    judge = TableReward("judge", {"#### 4": 2.0, "2+2 is 4. #### 4": 8.0, "#### 5": 10.0})
    combo = ComboReward([VerifyReward(mode="gsm8k"), judge], mode="cascade")
    scores = await combo.score(PROMPT, ["#### 4", "2+2 is 4. #### 4", "#### 5"])
    terse, explained, wrong = floats(scores)
    assert explained > terse > wrong
    await combo.aclose()


async def test_aclose_closes_every_child_then_raises() -> None:
    good, bad = TableReward("good", {}), TableReward("bad", {}, raises=True)
    combo = ComboReward([bad, good])
    with pytest.raises(RuntimeError, match="close failed"):
        await combo.aclose()
    assert good.closed


def test_invalid_shapes_are_rejected() -> None:
    a, b = TableReward("a", {}), TableReward("b", {})
    with pytest.raises(ValueError, match="weights"):
        ComboReward([a, b], weights=[1.0])
    with pytest.raises(ValueError, match="> 0"):
        ComboReward([a, b], weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="at least 2"):
        ComboReward([a], mode="cascade")
    with pytest.raises(ValueError, match="sum"):
        ComboReward([a, b], mode="cascade", weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="epsilon"):
        ComboReward([a, b], mode="cascade", epsilon=1.0)
    with pytest.raises(ValueError, match="at least 1"):
        ComboReward([])


async def test_config_builds_children_with_the_given_builder() -> None:
    config = ComboRewardConfig.model_validate(
        {
            "type": "combo",
            "mode": "sum",
            "rewards": [{"type": "fixed", "value": 1.0}, {"type": "fixed", "value": 2.0}],
            "weights": [1.0, 0.5],
        }
    )
    seen: list[Any] = []

    def make_child(child: Any) -> RewardModel:
        seen.append(child)
        return TableReward(f"fixed{child['value']}", {"x": child["value"]})

    combo = config.build(make_child)
    assert seen == list(config.rewards)
    assert await combo.score(PROMPT, ["x"]) == [2.0]
    assert math.isclose(config.epsilon, 1e-3)
    for bad in (
        {"type": "combo", "rewards": []},
        {"type": "combo", "rewards": [{}], "weights": [1.0, 2.0]},
        {"type": "combo", "mode": "cascade", "rewards": [{}]},
        {"type": "combo", "mode": "cascade", "rewards": [{}, {}], "weights": [1.0, 1.0]},
        {"type": "combo", "mode": "max", "rewards": [{}]},
        {"type": "combo", "rewards": [{}], "extra": 1},
        {"type": "combo", "rewards": [{}], "epsilon": 0.0},
    ):
        with pytest.raises(ValidationError):
            ComboRewardConfig.model_validate(bad)
