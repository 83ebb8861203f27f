"""SFT rows from one result line: TRL's conversational forms, the best response, what is dropped."""

from __future__ import annotations

import math

import pytest
from export_helpers import is_message_list, result, sample

from toa.export import ExportError, SFTOptions, candidates, sft_columns, to_sft_rows

PROVENANCE = {"id", "strategy", "agent", "reward", "node", "n_candidates"}


def test_messages_layout_is_trl_conversational_language_modeling() -> None:
    # TRL "conversational language modeling": {"messages": [{"role", "content"}, ...]},
    # the last message is the assistant's answer.
    line = result([sample(1, 0.2), sample(2, 0.9, agent="agent_b"), sample(3, 0.5)])
    (row,) = to_sft_rows(line, SFTOptions()).rows
    assert set(row) == {"messages"} | PROVENANCE
    assert is_message_list(row["messages"])
    assert row["messages"][:-1] == line["messages"]
    assert row["messages"][-1] == {"role": "assistant", "content": "answer number 2 from agent_b"}
    assert (row["id"], row["agent"], row["reward"], row["node"]) == ("p1", "agent_b", 0.9, 2)
    assert row["strategy"] == "toa"
    assert row["n_candidates"] == 3


def test_prompt_completion_layout_is_trl_conversational_prompt_completion() -> None:
    # TRL "conversational prompt-completion": {"prompt": [messages], "completion": [assistant]}.
    line = result([sample(1, 0.2), sample(2, 0.9)])
    (row,) = to_sft_rows(line, SFTOptions(layout="prompt_completion")).rows
    assert set(row) == {"prompt", "completion"} | PROVENANCE
    assert is_message_list(row["prompt"], roles={"system", "user", "assistant"})
    assert is_message_list(row["completion"], roles={"assistant"})
    assert len(row["completion"]) == 1
    assert row["prompt"] == line["messages"]
    assert [name for name, _ in sft_columns(SFTOptions(layout="prompt_completion"))][:2] == [
        "prompt",
        "completion",
    ]


def test_columns_match_rows_and_avoid_trl_reserved_names() -> None:
    reserved = {"tools", "images", "chat_template_kwargs", "completion_mask", "assistant_masks"}
    for layout in ("messages", "prompt_completion"):
        options = SFTOptions(layout=layout)
        (row,) = to_sft_rows(result([sample(1, 0.5)]), options).rows
        names = [name for name, _ in sft_columns(options)]
        assert names == list(row)
        assert not reserved & set(names)


def test_best_is_highest_raw_reward_and_ties_go_to_the_earlier_node() -> None:
    line = result([sample(9, 0.7), sample(4, 0.7), sample(5, -3.0), sample(6, 0.1)])
    (row,) = to_sft_rows(line, SFTOptions()).rows
    assert row["node"] == 4


def test_system_prompt_is_added_first_unless_the_conversation_has_one() -> None:
    line = result([sample(1, 0.5)])
    (row,) = to_sft_rows(line, SFTOptions(system_prompt="Be brief.")).rows
    assert row["messages"][0] == {"role": "system", "content": "Be brief."}
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    own = [{"role": "system", "content": "Own."}, {"role": "user", "content": "Q?"}]
    (row,) = to_sft_rows(result([sample(1, 0.5)], messages=own), SFTOptions(system_prompt="X")).rows
    assert row["messages"][:2] == own


def test_failed_empty_and_unscored_samples_are_never_chosen() -> None:
    line = result(
        [
            sample(1, None, error="ServerError: 500", response=None),
            sample(2, 0.99, response="   "),
            sample(3, None, reward_error="RewardError: down"),
            sample(4, math.nan),
            sample(5, math.inf),
            sample(6, 0.3),
        ]
    )
    converted = to_sft_rows(line, SFTOptions())
    assert converted.rows[0]["node"] == 6
    assert converted.samples_dropped == {"failed_call": 1, "empty_response": 1, "unscored": 3}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (result([sample(1, 0.5)], status="failed"), "failed_search"),
        (result([sample(1, None, reward_error="x")]), "no_scored_response"),
        (result([]), "no_scored_response"),
        ({"id": "p", "status": "done", "samples": [sample(1, 0.5)]}, "bad_result"),
    ],
)
def test_prompts_without_a_row_say_why(line: dict[str, object], reason: str) -> None:
    converted = to_sft_rows(line, SFTOptions())
    assert converted.rows == []
    assert converted.skip == reason


def test_min_reward_is_an_inclusive_bound_on_the_best() -> None:
    line = result([sample(1, 0.5), sample(2, 0.4)])
    assert to_sft_rows(line, SFTOptions(min_reward=0.5)).rows
    assert to_sft_rows(line, SFTOptions(min_reward=0.51)).skip == "below_min_reward"


def test_a_line_without_messages_falls_back_to_its_prompt_text() -> None:
    line = result([sample(1, 0.5)])
    del line["messages"]
    (row,) = to_sft_rows(line, SFTOptions()).rows
    assert row["messages"][0] == {"role": "user", "content": "Question p1?"}


def test_candidates_are_sorted_by_reward_then_node() -> None:
    ranked, dropped = candidates(result([sample(3, 0.5), sample(1, 0.5), sample(2, 0.9)]))
    assert [c.node for c in ranked] == [2, 1, 3]
    assert not dropped


@pytest.mark.parametrize("bad", [{"layout": "chat"}, {"min_reward": math.nan}])
def test_bad_options_raise_export_error(bad: dict[str, object]) -> None:
    with pytest.raises(ExportError):
        SFTOptions(**bad)  # type: ignore[arg-type]
