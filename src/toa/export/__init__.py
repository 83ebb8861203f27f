"""Training data from a run: SFT rows and DPO pairs in TRL's conversational form.

`export_run` reads a run directory's store (finished prompts only, safe while the run goes on) and
writes ``.jsonl``, ``.parquet`` or a Hugging Face `datasets` directory, with a dataset card;
`to_sft_rows` and `to_dpo_pairs` are the pure functions it applies to each result line.
"""

from __future__ import annotations

from toa.errors import ExportError
from toa.export.dpo import DPOOptions, IfShort, dpo_columns, to_dpo_pairs
from toa.export.exporter import export_run
from toa.export.filters import Dedupe, normalise_text
from toa.export.options import make_options
from toa.export.records import Candidate, Converted, SkipReason, candidates
from toa.export.report import ExportFormat, ExportReport, RewardStats
from toa.export.sft import SFTLayout, SFTOptions, sft_columns, to_sft_rows
from toa.export.writers import OutputKind, output_kind

__all__ = [
    "Candidate",
    "Converted",
    "DPOOptions",
    "Dedupe",
    "ExportError",
    "ExportFormat",
    "ExportReport",
    "IfShort",
    "OutputKind",
    "RewardStats",
    "SFTLayout",
    "SFTOptions",
    "SkipReason",
    "candidates",
    "dpo_columns",
    "export_run",
    "make_options",
    "normalise_text",
    "output_kind",
    "sft_columns",
    "to_dpo_pairs",
    "to_sft_rows",
]
