"""Run Alembic migrations programmatically, for ``govern db upgrade`` and for tests."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from govern.resources import migrations_dir
from govern.store.db import Database, store_errors

__all__ = ["alembic_config", "upgrade"]


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    # ConfigParser interpolation would choke on '%' in passwords.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    # Going through Database creates the SQLite folder and applies the same connection pragmas.
    db = Database(url)
    try:
        with store_errors(), db.engine.begin() as conn:
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        db.dispose()
