"""Cross-prompt priors: evidence from trees, sums, shrinkage, the priors.json format, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toa.errors import ConfigError
from toa.search import ParallelEnsemble, SequentialRefine
from toa.search.priors import (
    PRIOR_FORMAT,
    ArmCounts,
    Prior,
    evidence_from_tree,
    load_prior,
    reward_spread,
)
from toa.testing.sim_context import SimulatedContext, simulated_prompts
from toa.testing.world import World

AGENTS = ("agent_a", "agent_b", "agent_c")


async def test_evidence_counts_follow_the_tree_in_node_order() -> None:
    ctx = SimulatedContext(World.named("helps"))
    prompt = simulated_prompts(1)[0]
    tree = await SequentialRefine().run(prompt, ctx, budget=9, seed=2)
    evidence = evidence_from_tree(tree)
    assert evidence.prompts == 1
    spread = reward_spread([n.reward for n in tree.scored() if n.reward is not None])
    assert spread is not None
    # recount by hand, in node order
    pool = sorted(n.reward for n in tree.scored() if n.action == "fresh" and n.reward is not None)
    best: float | None = None
    fresh = dict.fromkeys(AGENTS, 0.0)
    log_rank = dict.fromkeys(AGENTS, 0.0)
    wins = dict.fromkeys(AGENTS, 0.0)
    refine_plays = dict.fromkeys(AGENTS, 0.0)
    refine_wins = dict.fromkeys(AGENTS, 0.0)
    gain = dict.fromkeys(AGENTS, 0.0)
    for node in tree.scored():
        assert node.reward is not None
        if node.action == "fresh":
            fresh[node.agent] += 1
            below = sum(r < node.reward for r in pool)
            equal = sum(r == node.reward for r in pool)
            log_rank[node.agent] += -math.log((below + 0.5 * equal) / len(pool))
            wins[node.agent] += best is not None and node.reward > best
        elif node.action == "refine":
            parent = tree.node(node.parents[0]).reward
            assert parent is not None
            refine_plays[node.agent] += 1
            if node.reward > parent:
                refine_wins[node.agent] += 1
                gain[node.agent] += (node.reward - parent) / spread
        best = node.reward if best is None else max(best, node.reward)
    for agent in AGENTS:
        got = evidence.fresh.get(agent, ArmCounts())
        assert (got.plays, got.wins) == (fresh[agent], wins[agent])
        assert math.isclose(got.log_rank, log_rank[agent])
        r = evidence.refine.get(agent, ArmCounts())
        assert (r.plays, r.wins) == (refine_plays[agent], refine_wins[agent])
        assert math.isclose(r.gain, gain[agent], abs_tol=1e-12)
        assert r.gained == r.wins  # every win's margin is measurable here: rewards spread
    assert sum(c.plays for c in evidence.refine.values()) > 0
    pairs = sum(c.plays for c in evidence.pairs.values())
    assert pairs == sum(c.plays for c in evidence.refine.values())


async def test_moa_merges_are_aggregate_evidence() -> None:
    from toa.search import MixtureOfAgents

    ctx = SimulatedContext(World.named("helps"))
    tree = await MixtureOfAgents().run(simulated_prompts(1)[0], ctx, budget=9, seed=0)
    evidence = evidence_from_tree(tree)
    merges = [n for n in tree.scored() if n.action == "aggregate"]
    assert merges
    assert sum(c.plays for c in evidence.aggregate.values()) == len(merges)
    wins = sum(
        1 for n in merges if (n.reward or 0.0) > max(tree.node(i).reward or 0.0 for i in n.parents)
    )
    assert sum(c.wins for c in evidence.aggregate.values()) == wins


async def test_failures_are_not_evidence() -> None:
    ctx = SimulatedContext(World.named("helps"), generate_failure_rate=0.5, score_failure_rate=0.2)
    tree = await ParallelEnsemble().run(simulated_prompts(1)[0], ctx, budget=12, seed=0)
    evidence = evidence_from_tree(tree)
    scored = len(tree.scored())
    assert 0 < scored < 12
    assert sum(c.plays for c in evidence.fresh.values()) == scored


async def test_a_prompt_with_one_fresh_answer_says_nothing_about_writers() -> None:
    ctx = SimulatedContext(World.named("helps"))
    tree = await SequentialRefine().run(simulated_prompts(1)[0], ctx, budget=3, seed=0)
    assert evidence_from_tree(tree).fresh == {}


def test_cold_beliefs_and_shrinkage_towards_the_evidence() -> None:
    cold = Prior.empty(AGENTS)
    g = cold.fresh_belief("agent_a", strength=8)
    assert (g.shape, g.rate) == (1.0, 1.0)
    b = cold.refine_belief("agent_a", "agent_b", strength=8)
    assert (b.a, b.b) == (1.0, 1.0)

    def strong(plays: float) -> Prior:
        counts = ArmCounts(plays=plays, wins=plays * 0.5, log_rank=plays * 0.25, ranked=plays)
        return Prior(AGENTS, 10, fresh={"agent_a": counts}, refine={"agent_a": counts})

    few = strong(4).fresh_belief("agent_a", strength=8)
    many = strong(400).fresh_belief("agent_a", strength=8)
    # the mean follows the evidence (strength ~ 4), the weight is capped by the strength
    assert many.shape / many.rate == pytest.approx((400 + 1) / (100 + 1))
    assert few.shape / few.rate == pytest.approx(5 / 2)  # shrunk towards 1
    assert (few.shape, many.shape) == (4, 8)
    assert strong(400).fresh_belief("agent_a", strength=1000).shape == 400
    r = strong(400).refine_belief("agent_a", "agent_b", strength=8)
    assert r.a + r.b == pytest.approx(8)
    assert r.a / (r.a + r.b) == pytest.approx(201 / 402)


def test_a_pair_rate_is_shrunk_towards_its_refiner() -> None:
    overall = ArmCounts(plays=100, wins=50)
    pair = ArmCounts(plays=4, wins=4)
    prior = Prior(AGENTS, 5, refine={"agent_a": overall}, pairs={("agent_a", "agent_b"): pair})
    with_pair = prior.refine_belief("agent_a", "agent_b", strength=10)
    without = prior.refine_belief("agent_a", "agent_c", strength=10)
    mean = with_pair.a / (with_pair.a + with_pair.b)
    assert without.a / (without.a + without.b) == pytest.approx(51 / 102)
    assert 0.5 < mean < 1.0
    assert mean == pytest.approx((4 + 4 * 51 / 102) / 8)


counts = st.builds(
    lambda p, w, e, g, gain, r: ArmCounts(p, min(w, p), e, min(g, min(w, p)), gain, r),
    *(st.floats(0, 1e6, allow_nan=False) for _ in range(2)),
    st.floats(0, 1e3),
    st.floats(0, 1e6),
    st.floats(0, 1e3),
    st.floats(0, 1e3),
)
agent = st.sampled_from(AGENTS)
priors = st.builds(
    Prior,
    st.just(AGENTS),
    st.integers(0, 10_000),
    st.dictionaries(agent, counts),
    st.dictionaries(agent, counts),
    st.dictionaries(st.tuples(agent, agent), counts),
    st.dictionaries(agent, counts),
)


@settings(max_examples=100, deadline=None)
@given(prior=priors)
def test_the_json_form_round_trips_exactly(prior: Prior) -> None:
    again = Prior.from_dict(json.loads(prior.to_json()))
    assert again.to_json() == prior.to_json()
    for a in AGENTS:
        assert again.fresh_belief(a, strength=8) == prior.fresh_belief(a, strength=8)
        assert again.refine_belief(a, "agent_b", strength=3) == prior.refine_belief(
            a, "agent_b", strength=3
        )


@settings(max_examples=50, deadline=None)
@given(one=priors, two=priors)
def test_sums_add_every_count(one: Prior, two: Prior) -> None:
    both = one + two
    assert both.prompts == one.prompts + two.prompts
    for a in AGENTS:
        left, right = one.fresh.get(a, ArmCounts()), two.fresh.get(a, ArmCounts())
        assert both.fresh.get(a, ArmCounts()).plays == pytest.approx(left.plays + right.plays)


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_prior_files_load_and_bad_ones_say_what_is_wrong_naming_the_file(tmp_path: Path) -> None:
    good = Prior(AGENTS, 3, fresh={"agent_b": ArmCounts(5, 2, 1.5, 1, 0.25, 4.5)})
    path = _write(tmp_path / "priors.json", good.to_dict())
    assert load_prior(path, AGENTS).to_json() == good.to_json()
    assert load_prior(path, tuple(reversed(AGENTS))).agents == tuple(reversed(AGENTS))

    with pytest.raises(ConfigError, match=r"missing\.json: prior file not found; write one"):
        load_prior(tmp_path / "missing.json", AGENTS)
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "toa-prior/1",\n  "agents": [', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.json:2: the prior file is not JSON"):
        load_prior(broken, AGENTS)
    other = {**good.to_dict(), "agents": ["agent_a", "agent_b", "x"]}
    with pytest.raises(
        ConfigError,
        match=r"other\.json: the prior is about agents .*missing: \['agent_c'\], not in the run: "
        r"\['x'\]\); write a prior for these agents with `toa priors",
    ):
        load_prior(_write(tmp_path / "other.json", other), AGENTS)
    cases = {
        "format": ({**good.to_dict(), "format": "nope"}, "format must be 'toa-prior/1'"),
        "negative": (
            {**good.to_dict(), "fresh": {"agent_a": {"plays": -1}}},
            r"fresh\.agent_a\.plays: expected a finite number >= 0",
        ),
        "wins": (
            {**good.to_dict(), "refine": {"agent_a": {"plays": 1, "wins": 2}}},
            r"refine\.agent_a: wins \(2\.0\) exceed plays",
        ),
        "stranger": (
            {**good.to_dict(), "fresh": {"zed": {"plays": 1}}},
            r"fresh: 'zed' is not one of the agents",
        ),
        "pair": (
            {**good.to_dict(), "pairs": [{"refiner": "agent_a", "parent": "zed"}]},
            r"pairs\[0\]: 'zed' is not one of the agents",
        ),
    }
    for name, (data, message) in cases.items():
        with pytest.raises(ConfigError, match=rf"{name}\.json: not a TOA prior: {message}"):
            load_prior(_write(tmp_path / f"{name}.json", data), AGENTS)
    assert good.to_dict()["format"] == PRIOR_FORMAT


def test_tied_answers_tell_less_and_a_fully_tied_pool_tells_nothing() -> None:
    from toa.search.priors import rank_evidence

    assert rank_evidence(0.0, [0.0, 0.0, 0.0, 0.0]) == (0.0, 0.0)  # every answer got the same 0
    weight, evidence = rank_evidence(0.9, [0.1, 0.5, 0.9])
    assert weight == 1.0
    assert evidence == pytest.approx(-math.log(2.5 / 3))
    right, wrong = rank_evidence(1.0, [0, 0, 0, 1]), rank_evidence(0.0, [0, 0, 0, 1])
    assert right == (1.0, pytest.approx(-math.log(3.5 / 4)))  # the one right answer: strong
    assert wrong[0] == pytest.approx(1 / 3)  # each wrong one, tied with two others: weak
    assert rank_evidence(1.0, [1.0]) == (0.0, 0.0)
    # a 0/1 reward where nobody was right: no evidence about any writer, the belief stays cold
    tree_prior = Prior(AGENTS, 1, fresh={"agent_a": ArmCounts(plays=4, ranked=0.0)})
    assert tree_prior.fresh_belief("agent_a", strength=8).shape == 1.0


def _counts() -> st.SearchStrategy[ArmCounts]:
    def build(plays: float, win_share: float, gain_share: float, rest: list[float]) -> ArmCounts:
        wins = plays * win_share
        return ArmCounts(plays, wins, rest[0], wins * gain_share, rest[1], rest[2])

    unit = st.floats(0, 1)
    amount = st.floats(0, 1e3, allow_subnormal=False)
    return st.builds(build, amount, unit, unit, st.lists(amount, min_size=3, max_size=3))


@given(
    st.dictionaries(st.sampled_from("abc"), _counts()),
    st.dictionaries(st.sampled_from("abc"), _counts()),
    st.dictionaries(st.tuples(st.sampled_from("abc"), st.sampled_from("abc")), _counts()),
    st.dictionaries(st.sampled_from("abc"), _counts()),
)
def test_a_prior_and_its_stored_json_give_the_same_beliefs(
    fresh: dict[str, ArmCounts],
    refine: dict[str, ArmCounts],
    pairs: dict[tuple[str, str], ArmCounts],
    aggregate: dict[str, ArmCounts],
) -> None:
    """A run hands a new prompt's search the prior it stores (not the JSON read back); a resume
    starts from the JSON. Both must give the very same numbers."""
    prior = Prior(("a", "b", "c"), 3, fresh, refine, pairs, aggregate)
    stored = Prior.from_dict(json.loads(prior.to_json()))
    for agent in prior.agents:
        for strength in (1.0, 8.0):
            assert prior.fresh_belief(agent, strength=strength) == stored.fresh_belief(
                agent, strength=strength
            )
            assert prior.aggregate_belief(agent, strength=strength) == stored.aggregate_belief(
                agent, strength=strength
            )
            for parent in prior.agents:
                assert prior.refine_belief(
                    agent, parent, strength=strength
                ) == stored.refine_belief(agent, parent, strength=strength)
