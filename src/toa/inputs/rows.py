"""Rows to prompts: the row rules of `toa.inputs.readers`, and the row every reader yields.

Each format's reader yields a `RawRow`: where the row starts, its parsed value, or the problem
that kept it from being read (`not_utf8` and `escaped_not_utf8` word the UTF-8 ones).
`RowParser.parse` turns a raw row into a `Prompt`, or an `InputError` naming the file and the
line (or Parquet row): it finds the prompt (a prompt field, or ``messages``, checked message by
message), takes the given id or derives one from the conversation, refuses an id seen before, and
keeps every other field as `Prompt.extra`. The rules themselves are in `toa.inputs.readers`.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, NamedTuple

from toa.errors import InputError
from toa.types import Message, Prompt, Role

__all__ = [
    "DEFAULT_PROMPT_FIELDS",
    "MESSAGES_FIELD",
    "RawRow",
    "RowParser",
    "escaped_not_utf8",
    "not_utf8",
]

DEFAULT_PROMPT_FIELDS: tuple[str, ...] = ("instruction", "prompt")
"""The fields tried for the prompt text, in order, when no `prompt_field` is given."""

MESSAGES_FIELD = "messages"
"""The field that holds a whole conversation instead of a prompt string."""

_ROLES: dict[str, Role] = {"system": "system", "user": "user", "assistant": "assistant"}
_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # what `surrogateescape` makes of bytes not UTF-8


class RawRow(NamedTuple):
    """A row as read: where it starts, its parsed value, or why it could not be read."""

    where: int  # line (text formats) or 1-based row (Parquet); 0: the file as a whole
    value: object = None
    problem: str | None = None


def not_utf8(byte: int, where: str = "") -> str:
    """The problem text for a `byte` that is not UTF-8; `where` is appended to name its place."""
    return f"not valid UTF-8: byte 0x{byte:02x}{where}; save the file as UTF-8"


def escaped_not_utf8(text: str, start: int = 0, end: int | None = None) -> str | None:
    """The reason a `surrogateescape`-decoded text is not UTF-8, or None when it is."""
    found = _NOT_UTF8.search(text, start, len(text) if end is None else end)
    return not_utf8(ord(found.group()) - 0xDC00) if found else None


class _BadRow(Exception):
    """Why a row cannot be used (internal: turned into an `InputError` with the location)."""


class RowParser:
    """Turns raw rows into prompts or errors, remembering the ids seen to catch duplicates."""

    def __init__(self, path: str, fmt: str, prompt_field: str | None, id_field: str) -> None:
        self.path = path
        self._unit = "row" if fmt == "parquet" else "line"
        self._fields = DEFAULT_PROMPT_FIELDS if prompt_field is None else (prompt_field,)
        self._explicit = prompt_field is not None
        self._id_field = id_field
        self._seen: dict[str, int] = {}

    def columns_problem(self, columns: list[str], what: str = "header") -> str | None:
        """Why no row of a file with these `columns` (a CSV header, a Parquet schema) can hold a
        prompt, or None when one can: the reader reports it once instead of once per row."""
        if MESSAGES_FIELD in columns or any(name in columns for name in self._fields):
            return None
        looked_for = ", ".join(repr(name) for name in (*self._fields, MESSAGES_FIELD))
        has = ", ".join(repr(name) for name in columns[:20]) or "no columns"
        hint = "" if self._explicit else "; name the column with --prompt-field"
        return (
            f"no prompt column: looked for {looked_for}; the {what} has {has}{hint}. "
            "No rows were read"
        )

    def parse(self, raw: RawRow) -> Prompt | InputError:
        """The row's prompt, or the error that says what is wrong with it and where."""
        try:
            if raw.problem is not None:
                raise _BadRow(raw.problem)
            prompt = self._prompt(raw.value)
        except _BadRow as bad:
            return self._error(str(bad), raw.where)
        self._seen[prompt.id] = raw.where
        return prompt

    def _prompt(self, row: object) -> Prompt:
        if not isinstance(row, dict):
            raise _BadRow(f"the row is {_kind(row)}, not an object")
        messages, used = self._messages(row)
        given = _given_id(row.get(self._id_field), self._id_field)
        prompt_id = _derived_id(messages) if given is None else given
        if prompt_id in self._seen:
            raise _BadRow(self._duplicate(prompt_id, derived=given is None))
        skipped = {used, self._id_field}
        extra = {key: value for key, value in row.items() if key not in skipped}
        return Prompt(prompt_id, messages, extra)

    def _messages(self, row: dict[Any, Any]) -> tuple[tuple[Message, ...], str]:
        field = next((name for name in self._fields if row.get(name) is not None), None)
        chat = row.get(MESSAGES_FIELD)
        if field is not None and chat is not None and self._explicit:
            raise _BadRow(f"the row has both {field!r} and {MESSAGES_FIELD!r}; keep one")
        if field is not None:
            return _text_messages(field, row[field]), field
        if chat is not None:
            return _chat_messages(chat), MESSAGES_FIELD
        looked_for = ", ".join(repr(name) for name in (*self._fields, MESSAGES_FIELD))
        has = ", ".join(repr(key) for key in list(row)[:20]) or "no fields"
        raise _BadRow(f"no prompt: looked for {looked_for}; the row has {has}")

    def _duplicate(self, prompt_id: str, *, derived: bool) -> str:
        first = self._seen[prompt_id]
        reason = f"duplicate id {prompt_id!r}, first used on {self._unit} {first}"
        if derived:
            reason += " (derived from the prompt: the same prompt with no id; give rows ids)"
        return reason

    def _error(self, reason: str, where: int) -> InputError:
        if not where:
            return InputError(reason, path=self.path)
        if self._unit == "line":
            return InputError(reason, path=self.path, line=where)
        error = InputError(f"row {where}: {reason}", path=self.path)
        error.line = where
        return error


def _text_messages(field: str, value: object) -> tuple[Message, ...]:
    if not isinstance(value, str):
        raise _BadRow(f"the prompt field {field!r} must be a string, got {_kind(value)}")
    if not value.strip():
        raise _BadRow(f"the prompt field {field!r} is empty")
    return (Message("user", value),)


def _chat_messages(value: object) -> tuple[Message, ...]:
    if isinstance(value, str):  # CSV, or a string column: the list as JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise _BadRow(f"{MESSAGES_FIELD!r} is a string but not JSON: {error.msg}") from None
    if not isinstance(value, list) or not value:
        raise _BadRow(
            f"{MESSAGES_FIELD!r} must be a non-empty list of {{role, content}} objects, "
            f"got {'an empty list' if value == [] else _kind(value)}"
        )
    messages = tuple(_message(index, item) for index, item in enumerate(value))
    if messages[-1].role != "user":
        raise _BadRow(f"{MESSAGES_FIELD!r} must end with a user message, not {messages[-1].role!r}")
    if not messages[-1].content.strip():
        raise _BadRow(f"the last user message in {MESSAGES_FIELD!r} is empty")
    return messages


def _message(index: int, item: object) -> Message:
    where = f"{MESSAGES_FIELD}[{index}]"
    if not isinstance(item, dict):
        raise _BadRow(f"{where} must be an object with 'role' and 'content', got {_kind(item)}")
    role = item.get("role")
    known = _ROLES.get(role) if isinstance(role, str) else None
    if known is None:
        raise _BadRow(f"{where} has role {role!r}; expected 'system', 'user' or 'assistant'")
    content = item.get("content")
    if not isinstance(content, str):
        raise _BadRow(f"{where} 'content' must be a string, got {_kind(content)}")
    return Message(known, content)


def _given_id(value: object, id_field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _BadRow(
            f"the id field {id_field!r} must be a string or an integer, got {_kind(value)}"
        )
    text = str(value)
    if not text.strip():
        raise _BadRow(f"the id field {id_field!r} is empty")
    return text


def _derived_id(messages: tuple[Message, ...]) -> str:
    """``p-`` and 12 hex digits of the SHA-256 of the conversation's canonical JSON."""
    canonical = json.dumps(
        [message.to_dict() for message in messages],
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    )
    return "p-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def _kind(value: object) -> str:
    """A JSON-ish name for a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"
