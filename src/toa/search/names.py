"""The strategy names, TOA first, as a plain constant that imports nothing.

The command line needs them at start-up (option help and checks) before any strategy is built;
`toa.search.strategies` holds the registry and checks at import that its keys are these names, in
this order, so there is still one list.
"""

from __future__ import annotations

__all__ = ["STRATEGY_NAMES"]

STRATEGY_NAMES: tuple[str, ...] = ("toa", "random", "prs", "ensemble", "seq-refine", "moa")
"""Every strategy name `toa.search.make_strategy` knows, TOA first."""
