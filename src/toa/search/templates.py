"""Prompt templates: the words strategies wrap around a prompt to refine or aggregate (TOA_SPEC).

The reference never published its templates; these are our own. Templates are data: each set
belongs to a task ('instruction', 'translation', 'math'), every text can be overridden, and every
template has a stable sha256 `hash` so a run manifest ties results to the exact words used.

Placeholders use `str.format` syntax and are checked when a template is made:

| role | required | optional |
|---|---|---|
| fresh | {question} | {source_lang}, {target_lang} |
| refine | {question}, {answer} | {source_lang}, {target_lang} |
| aggregate | {question}, {responses} | {source_lang}, {target_lang} |
| aggregate_system | {responses} | {source_lang}, {target_lang} |

{question} is the prompt's last user message; {source_lang} / {target_lang} come from the
prompt's `extra` fields of those names (defaults: 'the source language', 'English'). Write a
literal brace as ``{{`` or ``}}``.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from toa.errors import ConfigError
from toa.types import Message, Prompt

__all__ = [
    "TaskName",
    "Template",
    "TemplateRole",
    "Templates",
    "aggregate_messages",
    "fresh_messages",
    "refine_messages",
    "template_hash",
]

TaskName = Literal["instruction", "translation", "math"]
TemplateRole = Literal["fresh", "refine", "aggregate", "aggregate_system"]

_LANGS = frozenset({"source_lang", "target_lang"})
_PLACEHOLDERS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "fresh": (frozenset({"question"}), _LANGS),
    "refine": (frozenset({"question", "answer"}), _LANGS),
    "aggregate": (frozenset({"question", "responses"}), _LANGS),
    "aggregate_system": (frozenset({"responses"}), _LANGS),
}
_DEFAULT_VALUES = {"source_lang": "the source language", "target_lang": "English"}


def template_hash(text: str) -> str:
    """sha256 (hex) of a template's UTF-8 text: the same words always give the same hash."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Template:
    """One template: its role and its text, placeholders checked at construction."""

    role: TemplateRole
    text: str

    def __post_init__(self) -> None:
        if self.role not in _PLACEHOLDERS:
            raise ConfigError(f"template role must be one of {sorted(_PLACEHOLDERS)}")
        required, optional = _PLACEHOLDERS[self.role]
        names = _field_names(self.role, self.text)
        unknown = names - required - optional
        if unknown:
            raise ConfigError(
                f"{self.role} template: unknown placeholder(s) {sorted(unknown)}; allowed: "
                f"{sorted(required | optional)} (write {{{{ or }}}} for a literal brace)"
            )
        missing = required - names
        if missing:
            raise ConfigError(f"{self.role} template: missing placeholder(s) {sorted(missing)}")

    @property
    def hash(self) -> str:
        """`template_hash` of the text."""
        return template_hash(self.text)

    def render(self, values: Mapping[str, str]) -> str:
        """The text with its placeholders filled from `values` (optional ones defaulted)."""
        return self.text.format(**{**_DEFAULT_VALUES, **values})


def _field_names(role: str, text: str) -> frozenset[str]:
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as err:
        raise ConfigError(
            f"{role} template is not valid str.format text ({err}); "
            "write {{ or }} for a literal brace"
        ) from err
    names: set[str] = set()
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ConfigError(
                f"{role} template: placeholder {{{name}}} must be a plain name such as "
                "{question}, without index, attribute, conversion or format spec"
            )
        names.add(name)
    return frozenset(names)


@dataclass(frozen=True, slots=True, kw_only=True)
class Templates:
    """The templates of one task. `fresh` None means a fresh request is the prompt as given."""

    task: TaskName
    refine: Template
    aggregate: Template
    aggregate_system: Template
    fresh: Template | None = None

    @classmethod
    def for_task(cls, task: TaskName = "instruction", **overrides: str) -> Templates:
        """The built-in set for `task`, with any role's text replaced by `overrides`."""
        try:
            texts = _BUILT_IN[task]
        except KeyError:
            raise ConfigError(f"unknown task {task!r}; choose one of {sorted(_BUILT_IN)}") from None
        base = cls(
            task=task,
            refine=Template("refine", texts["refine"]),
            aggregate=Template("aggregate", texts["aggregate"]),
            aggregate_system=Template("aggregate_system", texts["aggregate_system"]),
            fresh=Template("fresh", texts["fresh"]) if "fresh" in texts else None,
        )
        return base.with_overrides(**overrides)

    def with_overrides(self, **texts: str) -> Templates:
        """A copy with the named roles' texts replaced (each checked like any template)."""
        unknown = set(texts) - set(_PLACEHOLDERS)
        if unknown:
            raise ConfigError(
                f"unknown template role(s) {sorted(unknown)}; choose from {sorted(_PLACEHOLDERS)}"
            )
        fresh = Template("fresh", texts["fresh"]) if "fresh" in texts else self.fresh
        return Templates(
            task=self.task,
            refine=Template("refine", texts.get("refine", self.refine.text)),
            aggregate=Template("aggregate", texts.get("aggregate", self.aggregate.text)),
            aggregate_system=Template(
                "aggregate_system", texts.get("aggregate_system", self.aggregate_system.text)
            ),
            fresh=fresh,
        )

    def hashes(self) -> dict[str, str]:
        """Role -> sha256 of each template in the set (for the run manifest and tree config)."""
        out = {"refine": self.refine.hash, "aggregate": self.aggregate.hash}
        out["aggregate_system"] = self.aggregate_system.hash
        if self.fresh is not None:
            out["fresh"] = self.fresh.hash
        return dict(sorted(out.items()))


def _values(prompt: Prompt, **more: str) -> dict[str, str]:
    values = {k: v for k in _LANGS if isinstance(v := prompt.extra.get(k), str)}
    values["question"] = prompt.text
    values.update(more)
    return values


def _with_last_user(messages: Sequence[Message], content: str) -> tuple[Message, ...]:
    """A copy of `messages` whose last user message is `content` (appended when none)."""
    out = list(messages)
    for i in range(len(out) - 1, -1, -1):
        if out[i].role == "user":
            out[i] = Message("user", content)
            return tuple(out)
    return (*out, Message("user", content))


def fresh_messages(prompt: Prompt, templates: Templates) -> tuple[Message, ...]:
    """The request for a from-scratch answer: the prompt itself, or the task's fresh template."""
    if templates.fresh is None:
        return prompt.messages
    return _with_last_user(prompt.messages, templates.fresh.render(_values(prompt)))


def refine_messages(prompt: Prompt, answer: str, templates: Templates) -> tuple[Message, ...]:
    """The request to improve `answer`: the refine template in place of the last user message."""
    text = templates.refine.render(_values(prompt, answer=answer))
    return _with_last_user(prompt.messages, text)


def _format_responses(responses: Sequence[str]) -> str:
    """The {responses} block of the aggregator: numbered, separated by blank lines."""
    return "\n\n".join(f"Response {i}:\n{text}" for i, text in enumerate(responses, start=1))


def aggregate_messages(
    prompt: Prompt,
    responses: Sequence[str],
    templates: Templates,
    *,
    role: Literal["user", "system"] = "user",
) -> tuple[Message, ...]:
    """The MoA aggregator request over `responses`.

    With role 'user' (the default; some chat templates reject system messages) the aggregate
    template replaces the last user message. With role 'system' the aggregate_system template
    becomes the system message (joined after the prompt's own, if any) and the prompt follows.
    """
    block = _format_responses(responses)
    if role == "user":
        text = templates.aggregate.render(_values(prompt, responses=block))
        return _with_last_user(prompt.messages, text)
    system = templates.aggregate_system.render(_values(prompt, responses=block))
    rest = list(prompt.messages)
    if rest and rest[0].role == "system":
        system = f"{rest.pop(0).content}\n\n{system}"
    return (Message("system", system), *rest)


_BUILT_IN: dict[str, dict[str, str]] = {
    "instruction": {
        "refine": (
            "Below are a question and an earlier answer to it. Write a better answer to the "
            "question: keep what the earlier answer gets right, fix what it gets wrong, add what "
            "it leaves out, and make the result complete and clear. Reply with the new answer "
            "only, without commenting on the earlier one.\n\n"
            "Question:\n{question}\n\nEarlier answer:\n{answer}"
        ),
        "aggregate": (
            "Below are a question and several answers to it written by different assistants. "
            "Some may be wrong, incomplete or biased. Read them critically and write one answer "
            "of your own that is more accurate, complete and better organised than each of "
            "them. Reply with that answer only, without referring to the others.\n\n"
            "Question:\n{question}\n\nAnswers:\n{responses}"
        ),
        "aggregate_system": (
            "Several assistants have answered the user's latest message; their answers follow. "
            "Some may be wrong, incomplete or biased. Use them as material and write one answer "
            "of your own that is more accurate, complete and better organised than each of "
            "them, without mentioning them.\n\n{responses}"
        ),
    },
    "translation": {
        "fresh": (
            "Translate the following text from {source_lang} into {target_lang}. Keep its "
            "meaning, tone and formatting. Reply with the translation only.\n\n{question}"
        ),
        "refine": (
            "Below are a text in {source_lang} and an earlier translation of it into "
            "{target_lang}. Write a better translation: correct mistranslations, omissions and "
            "awkward phrasing, and keep what is already right. Reply with the new translation "
            "only.\n\nText:\n{question}\n\nEarlier translation:\n{answer}"
        ),
        "aggregate": (
            "Below are a text in {source_lang} and several candidate translations of it into "
            "{target_lang}. Using the best parts of each, write one translation that is more "
            "accurate and fluent than any of them. Reply with the translation only.\n\n"
            "Text:\n{question}\n\nCandidate translations:\n{responses}"
        ),
        "aggregate_system": (
            "Several translators have translated the user's text into {target_lang}; their "
            "translations follow. Using the best parts of each, reply with one translation that "
            "is more accurate and fluent than any of them, and nothing else.\n\n{responses}"
        ),
    },
    "math": {
        "fresh": (
            "{question}\n\nSolve the problem step by step. End with a last line of the form "
            '"Final answer: <answer>".'
        ),
        "refine": (
            "Below are a math problem and an earlier solution to it. Write a better, complete "
            "solution: check every step of the earlier one, fix any mistake and fill any gap. "
            "Reply with the new solution only, and end it with a last line of the form "
            '"Final answer: <answer>".\n\nProblem:\n{question}\n\nEarlier solution:\n{answer}'
        ),
        "aggregate": (
            "Below are a math problem and several solutions to it. Some may be wrong. Check "
            "them, then write one correct, complete solution of your own, and end it with a "
            'last line of the form "Final answer: <answer>".\n\n'
            "Problem:\n{question}\n\nSolutions:\n{responses}"
        ),
        "aggregate_system": (
            "Several solvers have answered the user's math problem; their solutions follow. "
            "Some may be wrong. Check them, then write one correct, complete solution of your "
            'own, ending with a last line of the form "Final answer: <answer>".\n\n{responses}'
        ),
    },
}
