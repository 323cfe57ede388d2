"""Wires the parts together once per process. REST, Flight and the CLI all hold one Gateway."""

from __future__ import annotations

from dataclasses import dataclass

from govern.auth import PrincipalService, TokenService
from govern.catalog import Catalog
from govern.settings import Settings
from govern.store import Database

__all__ = ["Gateway"]


@dataclass
class Gateway:
    settings: Settings
    db: Database
    catalog: Catalog
    principals: PrincipalService
    tokens: TokenService

    @classmethod
    def open(cls, settings: Settings) -> Gateway:
        settings.home.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url)
        return cls(
            settings=settings,
            db=db,
            catalog=Catalog(db, settings.datasets_dir),
            principals=PrincipalService(db),
            tokens=TokenService(db, settings.token_secret, settings.token_ttl_seconds),
        )

    def close(self) -> None:
        self.db.dispose()
