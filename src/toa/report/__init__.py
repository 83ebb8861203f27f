"""A run as one self-contained HTML page: summary, who wrote the best answers, the rewards, the
compute by agent, and every prompt's search tree to explore (`toa report RUN_DIR`).

`write_report` reads the run's store read-only (safe while the run goes on). The page needs no
network: its style, script and data are inline, and the trees are drawn only when opened, so it
stays usable for runs of thousands of prompts.
"""

from __future__ import annotations

from toa.report.data import Gather, Histogram, histogram
from toa.report.writer import write_report

__all__ = ["Gather", "Histogram", "histogram", "write_report"]
