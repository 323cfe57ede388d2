"""The engine: runs a Plan as DuckDB SQL over an immutable dataset version."""

from __future__ import annotations

from govern.engine.query import Query, plan_query
from govern.engine.runner import Engine

__all__ = ["Engine", "Query", "plan_query"]
