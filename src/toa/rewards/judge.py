"""The `judge` reward: an LLM grades each response, through any OpenAI-compatible agent endpoint.

Two modes, with templates written for TOA (override them per run):

* ``yes_no``: the judge is asked whether the response is correct and helpful, answering Yes or
  No, with top log-probabilities requested (chat: ``"logprobs": true, "top_logprobs": k``;
  completion: ``"logprobs": k``). The score is P(yes) in [0, 1] from the FIRST generated token's
  top-k alternatives: ``sum(exp(lp) for yes variants) / (that + sum(exp(lp) for no variants))``,
  where a variant is any token equal to "yes" / "no" once whitespace, the tokenizer's word
  markers (▁, Ġ) and case are stripped ("Yes", " yes", "YES" ...). When neither appears in the
  top-k that is a `ScoreFailure`, not a guess. When the server returns no log-probabilities at
  all, the yes/no text alone would only give 0 or 1, so by default (``fallback="score"``) the
  judge is asked again in ``score`` mode and the 1-10 score N is mapped to (N - 1) / 9, keeping
  the scale in [0, 1]; ``fallback="fail"`` records a failure instead.
* ``score``: the judge gives a 1-10 score, read from its text ("Score: 7", "**Rating:** 7",
  "7/10", "8 out of 10", or a bare "7"; the last labelled score wins). The score is N in [1, 10].
  A reply with no such score, or one outside 1-10, is a `ScoreFailure` quoting the reply.

Requests use temperature 0 and few tokens (yes_no: 1, score: 16; ``max_tokens`` overrides both).
The question is the prompt's last user message; when the prompt's extra fields hold a reference
(``reference``, then ``gold_answer``, by default) it is shown to the judge as a reference answer.
One judge request per response, all of a call concurrently (the client bounds concurrency).

`JudgeReward` takes plain arguments and the judge as a `toa.agents.AgentSpec` (or a client); the
YAML side, ``reward: {type: judge, ...}`` with an inline endpoint or a configured agent's name, is
`toa.config.rewards.JudgeRewardConfig`.
"""

from __future__ import annotations

import asyncio
import math
import re
import string
from collections.abc import Sequence
from typing import Literal

from toa.agents.client import AgentClient
from toa.agents.spec import AgentMode, AgentSpec
from toa.errors import AgentError
from toa.rewards.endpoint import LazyClient
from toa.types import Completion, Message, Prompt, SamplingParams, Score, ScoreFailure

__all__ = [
    "DEFAULT_SCORE_TEMPLATE",
    "DEFAULT_YES_NO_TEMPLATE",
    "JudgeFallback",
    "JudgeMode",
    "JudgeReward",
    "check_template",
    "parse_score",
    "yes_probability",
]

JudgeMode = Literal["yes_no", "score"]
JudgeFallback = Literal["score", "fail"]

DEFAULT_YES_NO_TEMPLATE = """You are grading an answer to a question.

Question:
{question}
{reference_block}
Answer to grade:
{response}

Is the answer correct and helpful for the question? Reply with one word: Yes or No."""

DEFAULT_SCORE_TEMPLATE = """You are grading an answer to a question.

Question:
{question}
{reference_block}
Answer to grade:
{response}

Rate how correct and helpful the answer is, on a scale from 1 to 10 (1: wrong or useless, \
10: fully correct and helpful). Reply only with "Score: N", N a whole number from 1 to 10."""

REFERENCE_BLOCK = "\nReference answer (take it as correct):\n{reference}\n"
TEMPLATE_FIELDS = frozenset({"question", "response", "reference_block"})

_YES, _NO = "yes", "no"
_MARKERS = " \t\n\r▁Ġ"
_NUMBER = r"(\d+(?:\.\d+)?)"
_LABELLED = re.compile(rf"\b(?:score|rating|grade)\b[\s*:=]*(?:(?:is|of)\s+)?[\s*]*{_NUMBER}", re.I)
_FRACTION = re.compile(rf"{_NUMBER}\s*(?:/|out\s+of)\s*10\b", re.I)
_BARE = re.compile(rf"[\s*]*{_NUMBER}[\s*.]*")


def check_template(template: str) -> str:
    """`template` when its fields are among {question}, {response}, {reference_block} and it has
    {response}; ValueError otherwise (literal braces must be doubled)."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ValueError(f"judge template is not a valid format string: {exc}") from None
    if not fields <= TEMPLATE_FIELDS or "response" not in fields:
        raise ValueError(
            f"judge template fields must be among {sorted(TEMPLATE_FIELDS)} and include "
            f"{{response}}; got {sorted(fields)}"
        )
    return template


def yes_probability(alternatives: Sequence[tuple[str, float]]) -> float | None:
    """P(yes) in [0, 1] from one token's top (token, logprob) pairs (module docstring); None when
    no yes or no variant is among them."""
    mass = {_YES: 0.0, _NO: 0.0}
    for token, logprob in alternatives:
        word = token.strip(_MARKERS).lower()
        if word in mass:
            mass[word] += math.exp(logprob)
    total = mass[_YES] + mass[_NO]
    return mass[_YES] / total if total > 0 else None


def parse_score(text: str) -> float:
    """The 1-10 score in a judge's reply (module docstring); ValueError says why there is none."""
    labelled = _LABELLED.findall(text)
    fraction = _FRACTION.findall(text)
    bare = _BARE.fullmatch(text)
    found = labelled or fraction or ([bare.group(1)] if bare else [])
    if not found:
        raise ValueError(
            f"the judge's reply holds no 1-10 score (expected e.g. 'Score: 7' or '7/10'): "
            f"{_quote(text)}"
        )
    value = float(found[-1])
    if not 1.0 <= value <= 10.0:
        raise ValueError(f"the judge's score {found[-1]} is outside 1-10: {_quote(text)}")
    return value


def _quote(text: str, limit: int = 200) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


class JudgeReward:
    """LLM-as-judge reward (module docstring). One instance per run; `aclose` closes its pool.

    Args:
        agent: the judge endpoint: a spec (a pool is opened on first use) or a client to share.
        mode: 'yes_no' (P(yes) in [0, 1]) or 'score' (N in [1, 10]).
        top_logprobs: alternatives asked for the first token, 1-20 (yes_no).
        fallback: yes_no when the server sends no logprobs: 'score' (ask for a 1-10 score, mapped
            to [0, 1]) or 'fail'.
        yes_no_template / score_template: str.format templates (see `check_template`).
        reference_fields: prompt extra fields tried in order for a reference answer.
        max_tokens: completion tokens per judge request (default: 1 for yes_no, 16 for score).
        name: the reward's name in manifests.
    """

    def __init__(
        self,
        agent: AgentSpec | AgentClient,
        *,
        mode: JudgeMode = "yes_no",
        top_logprobs: int = 5,
        fallback: JudgeFallback = "score",
        yes_no_template: str = DEFAULT_YES_NO_TEMPLATE,
        score_template: str = DEFAULT_SCORE_TEMPLATE,
        reference_fields: Sequence[str] = ("reference", "gold_answer"),
        max_tokens: int | None = None,
        name: str = "judge",
    ) -> None:
        if mode not in ("yes_no", "score") or fallback not in ("score", "fail"):
            raise ValueError(
                f"mode must be yes_no|score and fallback score|fail: {mode}, {fallback}"
            )
        if not 1 <= top_logprobs <= 20:
            raise ValueError(f"top_logprobs must be in 1..20, got {top_logprobs}")
        self.name = name
        self.mode = mode
        self.fallback = fallback
        self._templates = {"yes_no": yes_no_template, "score": score_template}
        for template in self._templates.values():
            check_template(template)
        self._reference_fields = tuple(reference_fields)
        self._handle = LazyClient(agent)
        self._logprob_fields = _logprob_request(self._handle.spec.mode, top_logprobs)
        self._sampling = {
            m: SamplingParams(temperature=0.0, max_tokens=max_tokens or default)
            for m, default in (("yes_no", 1), ("score", 16))
        }

    async def score(self, prompt: Prompt, responses: Sequence[str]) -> list[Score]:
        """One score or `ScoreFailure` per response, in order."""
        if not responses:
            return []
        client = await self._handle.get()
        return list(await asyncio.gather(*(self._judge(client, prompt, r) for r in responses)))

    async def aclose(self) -> None:
        await self._handle.aclose()

    def render(self, mode: JudgeMode, prompt: Prompt, response: str) -> str:
        """The judge request text for one response."""
        given = (prompt.extra.get(f) for f in self._reference_fields)
        reference = next((str(v) for v in given if v is not None and v != ""), None)
        block = REFERENCE_BLOCK.format(reference=reference) if reference is not None else ""
        return self._templates[mode].format(
            question=prompt.text, response=response, reference_block=block
        )

    async def _judge(self, client: AgentClient, prompt: Prompt, response: str) -> Score:
        if self.mode == "score":
            return await self._graded(client, prompt, response, unit=False)
        asked = await self._ask(client, "yes_no", prompt, response)
        if isinstance(asked, ScoreFailure):
            return asked
        first = asked.logprobs[0] if asked.logprobs else ()
        if first:
            return _from_top_logprobs(first, asked.text)
        if self.fallback == "fail":
            return ScoreFailure(
                "the judge server returned no top logprobs, so P(yes) is unknown; use a server "
                "that returns them, or fallback: score",
                "NoLogprobs",
            )
        return await self._graded(client, prompt, response, unit=True)

    async def _graded(
        self, client: AgentClient, prompt: Prompt, response: str, *, unit: bool
    ) -> Score:
        asked = await self._ask(client, "score", prompt, response)
        if isinstance(asked, ScoreFailure):
            return asked
        try:
            value = parse_score(asked.text)
        except ValueError as exc:
            return ScoreFailure(str(exc), "UnparsableJudgeReply")
        return (value - 1.0) / 9.0 if unit else value

    async def _ask(
        self, client: AgentClient, mode: JudgeMode, prompt: Prompt, response: str
    ) -> Completion | ScoreFailure:
        extra = self._logprob_fields if mode == "yes_no" else None
        text = self.render(mode, prompt, response)
        try:
            return await client.generate(
                [Message("user", text)], sampling=self._sampling[mode], extra_body=extra
            )
        except AgentError as exc:
            return ScoreFailure(f"judge request failed: {exc}", type(exc).__name__)


def _from_top_logprobs(first: Sequence[tuple[str, float]], text: str) -> Score:
    p_yes = yes_probability(first)
    if p_yes is not None:
        return p_yes
    tokens = [token for token, _ in first]
    return ScoreFailure(
        f"neither yes nor no is among the judge's top {len(first)} first tokens {tokens} "
        f"(reply {_quote(text)})",
        "NoYesNoToken",
    )


def _logprob_request(mode: AgentMode, k: int) -> dict[str, object]:
    """Chat asks ``logprobs: true, top_logprobs: k``; the completions API takes ``logprobs: k``."""
    return {"logprobs": True, "top_logprobs": k} if mode == "chat" else {"logprobs": k}
