"""The incremental reader of a ``.json`` input: one top-level array, decoded element by element.

`JsonArrayReader` reads the text in chunks of ``chunk_bytes`` (bytes that are not UTF-8 kept as
lone surrogates, a byte order mark at the start dropped) and buffers only the unread part and the
current element, so a large array, even minified on one line, needs about one element of memory.
A decoding error is taken as real (not as a chunk cut short) once a newline follows its position,
since no JSON token spans a newline, or at the end of the file, or when the element is still cut
short after ``_MAX_ELEMENT_CHARS`` characters; a number that ends the buffer is decoded again
once more text has come. A missing ',' before a ``{`` is reported and that element read all the
same. After a malformed element, or other text where a ',' or ']' should be, the reader skips to
the next line that starts with a ``{`` no further right than the broken element's, or with a
``]`` left of it, so the rows after it still run. Each problem comes out as a `RawRow` carrying it.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Generator, Iterator
from io import BufferedIOBase

from toa.inputs.rows import RawRow, escaped_not_utf8

__all__ = ["JsonArrayReader"]

_MAX_ELEMENT_CHARS = 1 << 26  # a JSON array element this large is taken as malformed
_NOT_SPACE = re.compile(r"[^ \t\n\r]")
_LINE_OPENING = re.compile(r"\n([ \t]*)([{\]])")


class JsonArrayReader:
    """Streams the elements of a file holding one JSON array, decoding one element at a time.

    `rows` yields them in order (call it once); the module docstring says what is buffered, when
    a decoding error is taken as real, and where reading goes on after one.
    """

    def __init__(self, raw: BufferedIOBase, *, chunk_bytes: int) -> None:
        self._raw = raw
        self._chunk_bytes = chunk_bytes  # bytes read at a time
        self._bytes = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self._decoder = json.JSONDecoder()
        self._buf = ""
        self._pos = 0  # the next character to read
        self._eof = False
        self._started = False
        self._mark = 0  # a position whose line and column are known; never after `_pos`
        self._line = 1
        self._col = 0  # 0-based column of `_mark`

    def rows(self) -> Iterator[RawRow]:
        """The array's elements, in order, with problems as rows that carry them."""
        opening = self._opening()
        if opening is not None:
            yield opening
            return
        while self._skip_space():
            if self._buf[self._pos] == "]":
                self._pos += 1
                yield from self._trailing()
                return
            more = yield from self._element()
            if not more:
                return
        yield RawRow(0, problem="the file ends before the array is closed with ']'")

    def _opening(self) -> RawRow | None:
        if not self._skip_space():
            return RawRow(1, problem="the file is empty; expected a JSON array of objects")
        if self._buf[self._pos] != "[":
            line, _ = self._locate(self._pos)
            return RawRow(
                line,
                problem="expected a JSON array of objects ([{...}, ...]); "
                "for one object per line, name the file .jsonl",
            )
        self._pos += 1
        return None

    def _trailing(self) -> Iterator[RawRow]:
        if self._skip_space():
            line, _ = self._locate(self._pos)
            yield RawRow(line, problem="unexpected text after the array's closing ']'")

    def _element(self) -> Generator[RawRow, None, bool]:
        """Read one element and the ',' after it; returns whether there is more to read."""
        line, column = self._locate(self._pos)
        try:
            value = self._decode()
        except json.JSONDecodeError as error:
            at_line, at_col = self._location(error.pos)
            reason = f"malformed JSON: {error.msg} (line {at_line}, column {at_col})"
            newline = self._buf.rfind("\n", self._mark, error.pos)
            row = self._resync(reason, line, newline if newline >= 0 else error.pos, column)
            yield row
            return self._pos < len(self._buf)
        not_utf8 = escaped_not_utf8(self._buf, self._mark, self._pos)
        yield RawRow(line, problem=not_utf8) if not_utf8 else RawRow(line, value)
        if not self._skip_space() or self._buf[self._pos] == "]":
            return True
        if self._buf[self._pos] == ",":
            self._pos += 1
            return True
        at_line, _ = self._locate(self._pos)
        reason = f"malformed JSON: expected ',' or ']' after the element on line {line}"
        if self._buf[self._pos] == "{":  # a missing comma: read the next element all the same
            yield RawRow(at_line, problem=reason)
            return True
        yield self._resync(reason, at_line, self._pos, column)
        return self._pos < len(self._buf)

    def _decode(self) -> object:
        """Decode the value at `_pos`, reading more text while it is cut short."""
        while True:
            try:
                value, end = self._decoder.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError as error:
                pending = len(self._buf) - self._pos
                if self._eof or pending > _MAX_ELEMENT_CHARS or "\n" in self._buf[error.pos :]:
                    raise
                self._fill(max(pending, self._chunk_bytes))  # then decode again at the moved `_pos`
                continue
            # a number that ends the buffer may go on in the next chunk
            if end < len(self._buf) or self._eof or type(value) not in (int, float):
                self._pos = end
                return value
            self._fill()

    def _resync(self, reason: str, line: int, search_from: int, column: int) -> RawRow:
        """Skip to a line starting with '{' at most at `column`, or ']' left of it."""
        while True:
            found = _LINE_OPENING.search(self._buf, search_from)
            while found:
                indent = len(found.group(1)) + 1
                if indent <= column - (found.group(2) == "]"):
                    self._pos = found.start(2)
                    resumed, _ = self._locate(self._pos)
                    return RawRow(line, problem=f"{reason}; reading on from line {resumed}")
                found = _LINE_OPENING.search(self._buf, found.end())
            newline = self._buf.rfind("\n", search_from)
            self._pos = newline if newline >= 0 else len(self._buf)  # keep a partial line only
            self._locate(self._pos)
            if not self._fill():
                self._pos = len(self._buf)
                return RawRow(line, problem=f"{reason}; no element follows, the rest was skipped")
            search_from = self._pos

    def _skip_space(self) -> bool:
        """Move `_pos` past whitespace; False when the file ends first."""
        while True:
            found = _NOT_SPACE.search(self._buf, self._pos)
            if found:
                self._pos = found.start()
                return True
            self._pos = len(self._buf)
            if not self._fill():
                return False

    def _fill(self, want: int = 1) -> bool:
        """Drop the text before `_mark`, then append at least `want` characters (whole chunks, fewer
        at the end of the file); False when nothing was added."""
        self._buf = self._buf[self._mark :]
        self._pos -= self._mark
        self._mark = 0
        added = 0
        while added < want and not self._eof:
            data = self._raw.read(self._chunk_bytes)
            self._eof = not data
            text = self._bytes.decode(data, final=self._eof)
            if not self._started and text:
                self._started = True
                text = text.removeprefix("\ufeff")
            self._buf += text
            added += len(text)
        return added > 0

    def _location(self, pos: int) -> tuple[int, int]:
        """1-based line and column of `pos` (at or after `_mark`)."""
        newlines = self._buf.count("\n", self._mark, pos)
        if not newlines:
            return self._line, self._col + pos - self._mark + 1
        return self._line + newlines, pos - self._buf.rfind("\n", self._mark, pos)

    def _locate(self, pos: int) -> tuple[int, int]:
        """Like `_location`, and move `_mark` to `pos`: the text before it may be dropped."""
        self._line, column = self._location(pos)
        self._col = column - 1
        self._mark = pos
        return self._line, column
