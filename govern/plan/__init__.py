"""The Plan and its row-filter AST: the values that carry a decision. A neutral package, below
every part, so that policy (which makes Plans), engine (which runs them), provenance and the
edges all import it and none of them imports another for it."""

from __future__ import annotations

from govern.plan import rowfilter
from govern.plan.plan import COLUMN_ACTIONS, MASKS, Plan, strictest

__all__ = ["COLUMN_ACTIONS", "MASKS", "Plan", "rowfilter", "strictest"]
