"""Properties of the export over arbitrary result lines (hypothesis)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from export_helpers import read_jsonl, result, sample
from hypothesis import given, settings
from hypothesis import strategies as st

from toa.export import (
    DPOOptions,
    SFTOptions,
    candidates,
    dpo_columns,
    sft_columns,
    to_dpo_pairs,
    to_sft_rows,
)
from toa.export.filters import dedupe_key, length_ratio
from toa.export.records import Candidate
from toa.export.writers import writing

TEXTS = ["Paris.", "paris", "PARIS!", "London", "  ", "", "A longer answer, with detail."]
finite = st.floats(min_value=-5, max_value=5, allow_nan=False)
rewards = st.one_of(
    st.sampled_from([0.0, 0.5, 1.0]),  # ties are common
    finite,
    finite,
    st.sampled_from([None, float("nan")]),  # unscored
)
texts = st.one_of(st.sampled_from(TEXTS), st.text(max_size=30), st.text(min_size=5, max_size=60))


@st.composite
def samples(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(min_value=0, max_value=12))
    nodes = draw(st.permutations(range(1, n + 1)))
    out = []
    for node in nodes:
        fields: dict[str, Any] = {"response": draw(texts)}
        if draw(st.integers(0, 9)) == 0:
            fields.update(error="ServerError: 500", response=None)
        elif draw(st.integers(0, 9)) == 0:
            fields["reward_error"] = "RewardError: down"
        agent = draw(st.sampled_from(["agent_a", "agent_b", "agent_c"]))
        out.append(sample(node, draw(rewards), agent, **fields))
    return out


result_lines = st.builds(lambda s, id: result(s, id=id), samples(), st.text("ab/-1", max_size=6))
dpo_options = st.builds(
    DPOOptions,
    rejected_rank=st.one_of(st.none(), st.integers(2, 14)),
    if_short=st.sampled_from(["lowest", "skip"]),
    min_margin=st.sampled_from([0.0, 0.1, 1.0]),
    pairs_per_prompt=st.integers(1, 4),
    different_agents=st.booleans(),
    max_length_ratio=st.one_of(st.none(), st.sampled_from([0.5, 1.0, 3.0])),
    dedupe=st.sampled_from(["near", "exact", "none"]),
    min_reward=st.one_of(st.none(), st.just(0.5)),
)


def as_candidate(row: dict[str, Any], side: str) -> Candidate:
    return Candidate(
        node=row[f"{side}_node"],
        agent=row[f"{side}_agent"],
        response=row[side][0]["content"],
        reward=row[f"{side}_reward"],
    )


@given(result_lines, dpo_options)
def test_every_pair_is_a_strict_preference_with_distinct_texts(
    line: dict[str, Any], options: DPOOptions
) -> None:
    converted = to_dpo_pairs(line, options)
    assert (converted.skip is None) == bool(converted.rows)
    assert len(converted.rows) <= options.pairs_per_prompt
    ranked, _ = candidates(line)
    for row in converted.rows:
        chosen, rejected = as_candidate(row, "chosen"), as_candidate(row, "rejected")
        assert chosen.reward > rejected.reward + options.min_margin
        assert chosen.reward != rejected.reward  # no ties, whatever the margin
        assert chosen.reward == ranked[0].reward
        mode = options.dedupe
        assert dedupe_key(chosen.response, mode) != dedupe_key(rejected.response, mode)
        assert dedupe_key(chosen.response, "exact") != dedupe_key(rejected.response, "exact")
        if options.different_agents:
            assert chosen.agent != rejected.agent
        if options.max_length_ratio is not None:
            assert length_ratio(chosen, rejected) <= options.max_length_ratio
        if options.min_reward is not None:
            assert chosen.reward >= options.min_reward
    assert len({r["pair_id"] for r in converted.rows}) == len(converted.rows)
    assert len({r["rejected_node"] for r in converted.rows}) == len(converted.rows)


@given(result_lines)
def test_sft_row_is_the_best_candidate(line: dict[str, Any]) -> None:
    converted = to_sft_rows(line, SFTOptions())
    ranked, _ = candidates(line)
    assert bool(converted.rows) == bool(ranked)
    for row in converted.rows:
        best = max(ranked, key=lambda c: (c.reward, -c.node))
        assert (row["reward"], row["node"]) == (best.reward, best.node)
        assert row["messages"][-1]["content"].strip()


@given(st.lists(result_lines, max_size=8, unique_by=lambda r: r["id"]), dpo_options)
def test_ids_are_unique_per_row_kind_across_an_export(
    lines: list[dict[str, Any]], options: DPOOptions
) -> None:
    sft_ids = [row["id"] for line in lines for row in to_sft_rows(line, SFTOptions()).rows]
    pair_ids = [row["pair_id"] for line in lines for row in to_dpo_pairs(line, options).rows]
    assert len(set(sft_ids)) == len(sft_ids)
    assert len(set(pair_ids)) == len(pair_ids)


@pytest.mark.parametrize("kind", ["sft", "dpo"])
@settings(max_examples=40, deadline=None)
@given(lines=st.lists(result_lines, max_size=6), options=dpo_options)
def test_parquet_round_trip_equals_jsonl_rows(
    kind: str, lines: list[dict[str, Any]], options: DPOOptions
) -> None:
    pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    if kind == "sft":
        sft = SFTOptions(layout="prompt_completion")
        columns, rows = sft_columns(sft), [r for ln in lines for r in to_sft_rows(ln, sft).rows]
    else:
        columns, rows = dpo_columns(), [r for ln in lines for r in to_dpo_pairs(ln, options).rows]
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("rows.jsonl", "rows.parquet"):
            with writing(Path(tmp, name), columns) as writer:
                for row in rows:
                    writer.write(row)
        from_jsonl = read_jsonl(Path(tmp, "rows.jsonl"))
        table = pq.read_table(Path(tmp, "rows.parquet"))
    assert table.column_names == [name for name, _ in columns]
    assert table.to_pylist() == from_jsonl == rows


@settings(max_examples=30, deadline=None)
@given(
    world=st.sampled_from(["helps", "hurts", "dominant"]),
    strategy=st.sampled_from(["toa", "random", "prs", "ensemble", "seq-refine", "moa"]),
    budget=st.integers(1, 12),
    seed=st.integers(0, 2**16),
    failure_rate=st.sampled_from([0.0, 0.2]),
)
def test_candidates_from_the_tree_equal_candidates_from_its_samples_view(
    world: str, strategy: str, budget: int, seed: int, failure_rate: float
) -> None:
    """The export reads trees; stores of older releases give it result lines: same rows."""
    import asyncio

    from toa.engine.context import Compute
    from toa.engine.results import tree_result
    from toa.search import make_strategy
    from toa.testing import SimulatedContext, World, simulated_prompts

    prompt = simulated_prompts(1, seed=seed)[0]
    ctx = SimulatedContext(
        World.named(world, seed=seed),
        generate_failure_rate=failure_rate,
        score_failure_rate=failure_rate,
        seed=seed,
    )
    tree = asyncio.run(make_strategy(strategy).run(prompt, ctx, budget=budget, seed=seed))
    line = tree_result(prompt, tree, Compute())
    assert candidates(line, tree) == candidates(line)
    assert to_sft_rows(line, SFTOptions(), tree) == to_sft_rows(line, SFTOptions())
    assert to_dpo_pairs(line, DPOOptions(), tree) == to_dpo_pairs(line, DPOOptions())
