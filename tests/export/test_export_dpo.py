"""DPO pairs from one result line: TRL's conversational preference form and the pairing rules."""

from __future__ import annotations

from typing import Any

import pytest
from export_helpers import is_message_list, result, sample

from toa.export import DPOOptions, ExportError, dpo_columns, to_dpo_pairs


def ranked_line(n: int, **kw: Any) -> dict[str, Any]:
    """n samples with rewards n/10, (n-1)/10, ..., 0.1: node i has rank i."""
    agents = ("agent_a", "agent_b", "agent_c")
    return result([sample(i, (n - i + 1) / 10, agent=agents[i % 3]) for i in range(1, n + 1)], **kw)


def pairs(line: dict[str, Any], **options: Any) -> list[dict[str, Any]]:
    return to_dpo_pairs(line, DPOOptions(**options)).rows


def test_row_is_trl_conversational_preference() -> None:
    # TRL "conversational preference": prompt = list of messages; chosen / rejected = lists with
    # one assistant message each (the implicit-prompt form is not used).
    line = ranked_line(4)
    (row,) = pairs(line)
    assert is_message_list(row["prompt"])
    assert row["prompt"] == line["messages"]
    for side in ("chosen", "rejected"):
        assert is_message_list(row[side], roles={"assistant"})
        assert len(row[side]) == 1
    assert [name for name, _ in dpo_columns()] == list(row)
    reserved = {"tools", "images", "chat_template_kwargs", "completion_mask", "assistant_masks"}
    assert not reserved & set(row)


def test_default_pairs_the_best_with_the_lowest() -> None:
    (row,) = pairs(ranked_line(5))
    assert (row["chosen_node"], row["rejected_node"], row["rejected_rank"]) == (1, 5, 5)
    assert row["chosen"][0]["content"] == "answer number 1 from agent_b"
    assert row["pair_id"] == "p1/1-5"
    assert (row["chosen_reward"], row["rejected_reward"]) == (0.5, 0.1)
    assert row["n_candidates"] == 5


def test_rejected_rank_takes_the_kth_ranked() -> None:
    (row,) = pairs(ranked_line(40), rejected_rank=30)
    assert (row["rejected_node"], row["rejected_rank"]) == (30, 30)


def test_several_pairs_walk_down_from_rank_k_or_up_from_the_lowest() -> None:
    by_rank = pairs(ranked_line(10), rejected_rank=3, pairs_per_prompt=3)
    assert [r["rejected_rank"] for r in by_rank] == [3, 4, 5]
    lowest = pairs(ranked_line(10), pairs_per_prompt=3)
    assert [r["rejected_rank"] for r in lowest] == [10, 9, 8]
    assert {r["chosen_node"] for r in by_rank + lowest} == {1}
    assert len({r["pair_id"] for r in by_rank}) == 3


def test_fewer_candidates_than_the_rank_take_the_lowest_or_skip() -> None:
    converted = to_dpo_pairs(ranked_line(4), DPOOptions(rejected_rank=30))
    assert converted.rank_fallback
    assert converted.rows[0]["rejected_rank"] == 4
    skipped = to_dpo_pairs(ranked_line(4), DPOOptions(rejected_rank=30, if_short="skip"))
    assert (skipped.rows, skipped.skip, skipped.rank_fallback) == ([], "too_few_for_rank", False)


def test_ties_are_never_paired() -> None:
    line = result([sample(1, 0.5), sample(2, 0.5), sample(3, 0.5)])
    converted = to_dpo_pairs(line, DPOOptions())
    assert (converted.rows, converted.skip) == ([], "no_margin")
    # a tie at rank K is passed over for the next worse response
    line = result([sample(1, 0.5), sample(2, 0.5), sample(3, 0.2)])
    (row,) = pairs(line, rejected_rank=2)
    assert row["rejected_node"] == 3


def test_min_margin_is_a_strict_bound_on_the_gap() -> None:
    line = result([sample(1, 1.0), sample(2, 0.75), sample(3, 0.5)])
    assert [r["rejected_node"] for r in pairs(line, rejected_rank=2, min_margin=0.25)] == [3]
    assert to_dpo_pairs(line, DPOOptions(min_margin=0.5)).skip == "no_margin"


def test_different_agents_skips_responses_of_the_chosen_agent() -> None:
    line = result([sample(1, 0.9, "agent_a"), sample(2, 0.5, "agent_b"), sample(3, 0.1, "agent_a")])
    (row,) = pairs(line, different_agents=True)
    assert (row["chosen_agent"], row["rejected_agent"]) == ("agent_a", "agent_b")
    same = result([sample(1, 0.9, "agent_a"), sample(2, 0.5, "agent_a")])
    assert to_dpo_pairs(same, DPOOptions(different_agents=True)).skip == "same_agent"


def test_near_duplicates_are_removed_keeping_the_better_one() -> None:
    line = result(
        [
            sample(1, 0.9, response="The answer is 42."),
            sample(2, 0.8, response="the   ANSWER is 42"),
            sample(3, 0.1, response="the answer is: 42!"),
            sample(4, 0.5, response="Something else"),
        ]
    )
    converted = to_dpo_pairs(line, DPOOptions())
    (row,) = converted.rows
    assert (row["chosen_node"], row["rejected_node"], row["n_candidates"]) == (1, 4, 2)
    assert converted.samples_dropped == {"duplicate": 2}
    exact = to_dpo_pairs(line, DPOOptions(dedupe="exact"))
    assert exact.rows[0]["rejected_node"] == 3


def test_identical_texts_never_pair_even_without_dedupe() -> None:
    line = result([sample(1, 0.9, response="same"), sample(2, 0.1, response=" same ")])
    assert to_dpo_pairs(line, DPOOptions(dedupe="none")).skip == "only_duplicates"
    assert to_dpo_pairs(line, DPOOptions()).skip == "only_duplicates"


def test_length_ratio_cap_drops_pairs_and_takes_the_next() -> None:
    line = result(
        [
            sample(1, 0.9, response="x" * 100),
            sample(2, 0.5, response="y" * 80),
            sample(3, 0.1, response="z" * 10),
        ]
    )
    converted = to_dpo_pairs(line, DPOOptions(max_length_ratio=2.0))
    assert converted.rows[0]["rejected_node"] == 2
    assert converted.pairs_dropped == {"length_ratio": 1}
    none_left = to_dpo_pairs(line, DPOOptions(max_length_ratio=1.1))
    assert (none_left.rows, none_left.skip) == ([], "length_ratio")


@pytest.mark.parametrize(
    ("line", "options", "reason"),
    [
        (result([sample(1, 0.5)], status="failed"), {}, "failed_search"),
        (result([sample(1, None, error="x", response=None)]), {}, "no_scored_response"),
        (result([sample(1, 0.5), sample(2, None, reward_error="x")]), {}, "single_response"),
        (ranked_line(3), {"min_reward": 0.31}, "below_min_reward"),
        ({"id": "x", "status": "done", "samples": []}, {}, "bad_result"),
    ],
)
def test_prompts_without_a_pair_say_why(
    line: dict[str, Any], options: dict[str, Any], reason: str
) -> None:
    converted = to_dpo_pairs(line, DPOOptions(**options))
    assert (converted.rows, converted.skip) == ([], reason)


def test_min_reward_bounds_the_chosen_only() -> None:
    (row,) = pairs(ranked_line(3), min_reward=0.3)
    assert row["rejected_reward"] == 0.1


@pytest.mark.parametrize(
    "bad",
    [
        {"rejected_rank": 1},
        {"pairs_per_prompt": 0},
        {"min_margin": -0.1},
        {"min_margin": float("nan")},
        {"max_length_ratio": 0.0},
        {"if_short": "first"},
        {"dedupe": "fuzzy"},
    ],
)
def test_bad_options_raise_export_error(bad: dict[str, Any]) -> None:
    with pytest.raises(ExportError):
        DPOOptions(**bad)
