"""The `verify` reward: rule-based answer checking for math problems with a known answer.

GSM8K mode (no extra dependency): the gold is a number (``prompt.extra["gold_answer"]``); the
response's answer is the first number after its last "Final answer:" / "The final answer is" /
"####" marker, else after its last "the answer is", else the last number in the text. Numbers are
compared exactly as fractions after dropping thousands separators, currency signs, percent signs
and units ("$1,128.00" == "1128"; "50%" == "50", as GSM8K golds carry no percent sign).

MATH mode: the answer is the content of the response's last ``\\boxed{...}`` (nested braces
allowed), else what follows a final-answer marker; the gold may be bare or contain ``\\boxed``.
Two plain numbers are compared in-process; anything else goes to math-verify (HuggingFace, the
``math`` extra), which handles fractions, decimals, ``\\dfrac``, ``\\left( \\right)``, ``\\!``,
``\\text{}`` units, ``^\\circ``, percentages, sets, intervals, matrices and equations. A gold that
math-verify cannot parse falls back to normalised string equality. Decimals match to 6 places
(math-verify's default rounding: "1/3" == "0.3333333333", "0.33" != "1/3").

Why math-verify, and why in a child process (measured on the 2-core dev machine, math-verify
0.9.0): it installs from PyPI with no network use at import or run time (an audit hook saw no
socket event); importing it costs about 0.3 s (sympy); a typical comparison takes 1-70 ms, so a
sympy parse_latex fallback would only add code. ``9^{999999999}`` runs into its timeout (5 s by
default), which uses SIGALRM and so works only in a process's main thread: comparisons run in ONE
``python -c`` child owned by the reward (started on the first LaTeX answer, about 1.2-1.6 s).
The event loop never blocks; an answer that hits the timeout is a `ScoreFailure` (undecided, not
wrong); a child stuck past a hard deadline (C code ignores signals) is killed and restarted.

Scores: `correct` (default 1.0) or `incorrect` (default 0.0). A response with no extractable
answer is incorrect (the model failed to answer). A row without a gold answer is a `ScoreFailure`
naming the field: we cannot score it. The YAML side, ``reward: {type: verify, ...}``, is
`toa.config.rewards.VerifyRewardConfig`.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import logging
import os
import re
import sys
import time
from collections.abc import Sequence
from fractions import Fraction
from typing import Literal

from toa.errors import ConfigError
from toa.rewards.batching import failures
from toa.types import Prompt, Score, ScoreFailure

__all__ = [
    "VerifyMode",
    "VerifyReward",
    "answers_equal_numeric",
    "extract_boxed",
    "extract_gsm8k_answer",
    "extract_math_answer",
    "parse_number",
]

VerifyMode = Literal["gsm8k", "math", "auto"]

_MATH_EXTRA_HINT = "install the math extra: pip install 'toa-synth[math]' (math-verify)"
_STARTUP_ALLOWANCE_S = 60.0  # worker spawn + imports on a loaded machine, seconds

_NUMBER = re.compile(
    r"(?:(?<![\w)\]}.])-)?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?![\d.]))?"
    r"|(?<![\w.])-?\.\d+"
)
_FINAL_MARKER = re.compile(r"final\s+answer\s*(?:is\s*)?:?|####", re.IGNORECASE)
_ANSWER_IS = re.compile(r"\banswer\s+is\b", re.IGNORECASE)  # not "Answer:": often a preamble
_CALCULATOR = re.compile(r"<<[^<>]*>>")  # GSM8K's <<18*4=72>> annotations
_TEXT_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
_SPACING = re.compile(r"\\[!,;:]|\\(?:left|right)(?![a-zA-Z])|\\\$|\$|\\%|%")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def parse_number(text: str) -> Fraction | None:
    """The exact value of a string that is one number, else None.

    Accepts signs, thousands commas, decimals, ``a/b``, ``\\frac{a}{b}``, and ignores currency
    and percent signs, LaTeX spacing, trailing sentence punctuation and a trailing unit word
    ("12 dollars", "5\\text{ cm}").
    """
    cleaned = _TEXT_WRAP.sub(r" \1 ", text.replace("{,}", ","))
    cleaned = re.sub(r"\\[dt]?frac\{(-?\d+)\}\{(\d+)\}", r"\1/\2", cleaned)
    cleaned = _SPACING.sub("", cleaned).strip().rstrip(".").strip()
    cleaned = re.sub(r"^[a-zA-Z]\s*=\s*", "", cleaned)  # "x = 5"
    cleaned = re.sub(r"(?<=\d)\s+[a-zA-Z]+\.?$", "", cleaned)  # one trailing unit word
    match = _NUMBER.fullmatch(cleaned)
    return _to_fraction(match.group(0)) if match else None


def _to_fraction(number: str) -> Fraction | None:
    try:
        return Fraction(number.replace(",", "").replace(" ", ""))
    except (ValueError, ZeroDivisionError):
        return None


def _first_number(text: str) -> Fraction | None:
    match = _NUMBER.search(_CALCULATOR.sub(" ", text))
    return _to_fraction(match.group(0)) if match else None


def extract_gsm8k_answer(text: str) -> Fraction | None:
    """The numeric answer of a GSM8K-style response, or None when it states none.

    Priority: the first number after the last "final answer" / "####" marker; else after the last
    "the answer is"; else the last number in the text. A marker followed by no number
    means no answer (the model's stated answer is not numeric: no guessing from its working).
    """
    for marker in (_FINAL_MARKER, _ANSWER_IS):
        matches = list(marker.finditer(text))
        if matches:
            tail = text[matches[-1].end() :]
            boxed = extract_boxed(tail)
            return parse_number(boxed) if boxed is not None else _first_number(tail)
    numbers = _NUMBER.findall(_CALCULATOR.sub(" ", text))
    return _to_fraction(numbers[-1]) if numbers else None


def extract_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` or ``\\fbox{...}`` (nested braces), else None."""
    starts = list(_BOXED.finditer(text))
    for start in reversed(starts):
        depth, begin = 1, start.end()
        for position in range(begin, len(text)):
            depth += {"{": 1, "}": -1}.get(text[position], 0)
            if depth == 0:
                return text[begin:position].strip()
    return None  # none, or unbalanced


def extract_math_answer(text: str) -> str | None:
    """A MATH-style response's answer: last ``\\boxed{}``, else the final-answer line, else None."""
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed or None
    for marker in (_FINAL_MARKER, _ANSWER_IS):
        matches = list(marker.finditer(text))
        if matches:
            line = text[matches[-1].end() :].strip().split("\n", 1)[0]
            answer = line.strip().rstrip(".").strip().strip("$").strip()
            return answer or None
    return None


def answers_equal_numeric(gold: str, answer: str) -> bool | None:
    """Exact comparison when both are plain numbers; None when either needs LaTeX equivalence."""
    gold_value, answer_value = parse_number(gold), parse_number(answer)
    if gold_value is None or answer_value is None or "%" in gold + answer:
        return None
    return gold_value == answer_value


def _normalise_latex(text: str) -> str:
    text = _TEXT_WRAP.sub(r"\1", text).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return re.sub(r"\s+", "", _SPACING.sub("", text)).lower()


def _latex_equal_batch(gold: str, answers: list[str], timeout_s: int) -> list[bool | None]:
    """In the worker process: math-verify equivalence of each answer with the gold.

    None where a parse or comparison ran into the timeout: undecided, not wrong (math-verify
    itself reports a timeout as False; we tell the two apart by the time taken).
    """
    math_verify = importlib.import_module("math_verify")
    dollars = re.compile(r"(?<!\\)\$")
    gold_parsed = math_verify.parse(f"${dollars.sub('', gold)}$", parsing_timeout=timeout_s)
    results: list[bool | None] = []
    for answer in answers:
        if not gold_parsed:
            results.append(_normalise_latex(answer) == _normalise_latex(gold))
            continue
        started = time.monotonic()
        parsed = math_verify.parse(f"${dollars.sub('', answer)}$", parsing_timeout=timeout_s)
        equal = bool(math_verify.verify(gold_parsed, parsed, timeout_seconds=timeout_s))
        timed_out = not equal and time.monotonic() - started >= timeout_s
        results.append(None if timed_out else equal)
    return results


class _WorkerError(Exception):
    """The comparison worker failed, timed out or was closed."""


def _worker_main() -> None:
    """The worker process: one JSON request per stdin line, one JSON reply per stdout line.

    Anything a library writes to stdout goes to stderr instead, so replies stay parseable.
    """
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.disable(logging.WARNING)  # math-verify logs every timeout
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply: object = _latex_equal_batch(
                request["gold"], request["answers"], request["timeout_s"]
            )
        except Exception as error:  # reported to the parent, which records failures
            reply = {"error": f"math-verify raised {error!r}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


class _MathWorker:
    """One child process running math-verify, one batch at a time, killed when stuck.

    A plain ``python -c`` child (not multiprocessing), so it never re-imports the caller's
    ``__main__`` and needs no ``if __name__ == "__main__"`` guard in user scripts.
    """

    def __init__(self, timeout_s: int, hard_limit_s: float | None = None) -> None:
        self._timeout_s = timeout_s
        self._hard_limit_s = hard_limit_s
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    async def compare(self, gold: str, answers: list[str]) -> list[bool | None]:
        """One verdict per answer (None: timed out); raises _WorkerError when the worker fails."""
        async with self._lock:
            if self._closed:
                raise _WorkerError("the verify reward was closed")
            process = await self._started()
            assert process.stdin is not None
            assert process.stdout is not None
            request = {"gold": gold, "answers": answers, "timeout_s": self._timeout_s}
            process.stdin.write((json.dumps(request) + "\n").encode())
            limit = self._hard_limit_s or (
                _STARTUP_ALLOWANCE_S + 2.5 * self._timeout_s * (1 + len(answers))
            )
            try:
                await process.stdin.drain()
                line = await asyncio.wait_for(process.stdout.readline(), limit)
            except (TimeoutError, ConnectionError) as error:
                await self._stop()
                raise _WorkerError(f"math-verify worker failed ({error!r}); restarted") from None
            return self._parse_reply(line, len(answers))

    def _parse_reply(self, line: bytes, expected: int) -> list[bool | None]:
        reply = json.loads(line) if line else {"error": "the math-verify worker exited"}
        if isinstance(reply, dict):
            raise _WorkerError(str(reply.get("error")))
        if not isinstance(reply, list) or len(reply) != expected:
            raise _WorkerError(f"math-verify worker replied {reply!r}")
        return [None if flag is None else bool(flag) for flag in reply]

    async def _started(self) -> asyncio.subprocess.Process:
        if self._process is None or self._process.returncode is not None:
            await self._stop()
            code = "from toa.rewards.verify import _worker_main; _worker_main()"
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                code,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                env=env,
            )
        return self._process

    async def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            process.kill()
        await process.wait()

    async def close(self) -> None:
        """Stop the worker: an in-flight comparison fails, later ones refuse (idempotent)."""
        self._closed = True
        await self._stop()


def _math_verify_installed() -> bool:
    """Whether math-verify can be imported (checked without importing it here)."""
    return importlib.util.find_spec("math_verify") is not None


class VerifyReward:
    """Scores `correct` when a response's answer equals the row's gold answer, else `incorrect`.

    Args:
        mode: "gsm8k" (numbers), "math" (LaTeX, needs the math extra) or "auto" (math when the
            gold is not a plain number or either side has ``\\boxed``, else gsm8k).
        gold_field: the `Prompt.extra` key holding the gold answer.
        correct, incorrect: the two reward values (any finite floats).
        timeout_s: math-verify's limit per parse and per comparison, whole seconds >= 1.
    """

    name = "verify"

    def __init__(
        self,
        *,
        mode: VerifyMode = "auto",
        gold_field: str = "gold_answer",
        correct: float = 1.0,
        incorrect: float = 0.0,
        timeout_s: int = 5,
    ) -> None:
        self._has_math = _math_verify_installed()
        if mode == "math" and not self._has_math:
            raise ConfigError(f"verify reward in mode 'math' needs math-verify: {_MATH_EXTRA_HINT}")
        self._mode, self._gold_field = mode, gold_field
        self._correct, self._incorrect = correct, incorrect
        self._timeout_s = timeout_s
        self._worker = _MathWorker(timeout_s)

    async def score(self, prompt: Prompt, responses: Sequence[str]) -> list[Score]:
        gold = self._gold(prompt)
        if isinstance(gold, ScoreFailure):
            return [gold] * len(responses)
        gold_math = extract_boxed(gold) or gold
        results: list[Score] = []
        latex: dict[int, str] = {}  # response index -> answer that needs math-verify
        for index, response in enumerate(responses):
            if self._mode_for(gold, response) == "gsm8k":
                results.append(self._gsm8k(gold, response))
                continue
            answer = extract_math_answer(response)
            equal = False if answer is None else answers_equal_numeric(gold_math, answer)
            if equal is None and answer is not None:
                latex[index] = answer
            results.append(self._value(bool(equal)))  # a LaTeX answer's value is set below
        if latex:
            for index, score in zip(latex, await self._score_latex(gold_math, latex), strict=True):
                results[index] = score
        return results

    def _gold(self, prompt: Prompt) -> str | ScoreFailure:
        value = prompt.extra.get(self._gold_field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str) or not value.strip():
            return ScoreFailure(
                f"prompt {prompt.id!r} has no gold answer in field {self._gold_field!r} "
                f"(got {value!r}); the verify reward cannot score it",
                error_type="MissingGoldAnswer",
            )
        return value.strip()

    def _mode_for(self, gold: str, response: str) -> Literal["gsm8k", "math"]:
        if self._mode != "auto":
            return self._mode
        if "\\boxed" in gold or "\\boxed" in response or parse_number(gold) is None:
            return "math"
        return "gsm8k"

    def _gsm8k(self, gold: str, response: str) -> Score:
        gold_value = parse_number(gold)
        if gold_value is None:
            gold_value = extract_gsm8k_answer(gold)
        if gold_value is None:
            return ScoreFailure(
                f"gold answer {gold!r} in field {self._gold_field!r} is not a number (mode gsm8k)",
                error_type="InvalidGoldAnswer",
            )
        return self._value(extract_gsm8k_answer(response) == gold_value)

    async def _score_latex(self, gold: str, latex: dict[int, str]) -> list[Score]:
        if not self._has_math:
            message = f"this answer needs LaTeX equivalence: {_MATH_EXTRA_HINT}"
            return failures(len(latex), message, "MissingDependency")
        try:
            flags = await self._worker.compare(gold, list(latex.values()))
        except _WorkerError as error:
            return failures(len(latex), str(error), "VerifyWorkerError")
        return [self._verdict(flag) for flag in flags]

    def _verdict(self, flag: bool | None) -> Score:
        if flag is None:
            message = f"math-verify timed out ({self._timeout_s} s) comparing this answer"
            return ScoreFailure(message, "VerifyTimeout")
        return self._value(flag)

    def _value(self, correct: bool) -> float:
        return self._correct if correct else self._incorrect

    async def aclose(self) -> None:
        await self._worker.close()
