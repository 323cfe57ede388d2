"""Persistence: SQLAlchemy models and the database handle. Schema changes go through Alembic."""

from __future__ import annotations

from govern.store.db import Database, store_errors

__all__ = ["Database", "store_errors"]
