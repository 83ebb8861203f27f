"""Candidate filters: text normalisation, duplicate removal and the length-bias measure.

Pure functions over `Candidate` lists; no I/O. Lengths are in Unicode characters of the response
text (a tokenizer-free proxy: the export does not know the model that will be trained).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Literal

from toa.export.records import Candidate

__all__ = ["Dedupe", "dedupe", "dedupe_key", "length_ratio", "normalise_text"]

Dedupe = Literal["near", "exact", "none"]
"""'near': same text after `normalise_text`; 'exact': same text once stripped; 'none': keep all."""


class _PunctuationToSpace(dict[int, int]):
    """A `str.translate` table: Unicode punctuation (categories P*) to a space, the rest to itself.

    Filled lazily, one entry per distinct character met, so translating stays a C-level loop.
    """

    def __missing__(self, code: int) -> int:
        value = _SPACE if unicodedata.category(chr(code)).startswith("P") else code
        self[code] = value
        return value


_SPACE = ord(" ")
_PUNCTUATION = _PunctuationToSpace()


def normalise_text(text: str) -> str:
    """`text` casefolded, NFKC-normalised, punctuation removed and whitespace collapsed.

    Two responses with the same normal form are near-duplicates ("Hello, World!" and "hello
    world"). Punctuation is every Unicode category P* character; it becomes a space, so that
    "a,b" and "a b" agree.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(folded.translate(_PUNCTUATION).split())


def dedupe_key(text: str, mode: Dedupe) -> str:
    """The text two responses must share to count as duplicates under `mode`.

    With 'none' the stripped text is returned: it still decides whether a DPO pair is two
    identical texts (never exported).
    """
    return normalise_text(text) if mode == "near" else text.strip()


def dedupe(candidates: Iterable[Candidate], mode: Dedupe) -> tuple[list[Candidate], int]:
    """The candidates with later duplicates removed, and how many were removed.

    Keeps the first of each group, so pass the candidates best first: a duplicate of a better
    response goes, the better one stays.
    """
    kept: list[Candidate] = []
    if mode == "none":
        kept = list(candidates)
        return kept, 0
    seen: set[str] = set()
    removed = 0
    for candidate in candidates:
        key = dedupe_key(candidate.response, mode)
        if key in seen:
            removed += 1
            continue
        seen.add(key)
        kept.append(candidate)
    return kept, removed


def length_ratio(chosen: Candidate, rejected: Candidate) -> float:
    """len(chosen) / len(rejected) in characters of the stripped texts (both are non-empty)."""
    return len(chosen.response.strip()) / len(rejected.response.strip())
