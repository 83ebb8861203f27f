"""Prompts in: the file readers (JSONL, JSON, CSV, Parquet, gzip) and the checks on each row."""

from __future__ import annotations

from toa.inputs.readers import (
    DEFAULT_PROMPT_FIELDS,
    MESSAGES_FIELD,
    SUPPORTED_SUFFIXES,
    read_prompts,
)

__all__ = ["DEFAULT_PROMPT_FIELDS", "MESSAGES_FIELD", "SUPPORTED_SUFFIXES", "read_prompts"]
