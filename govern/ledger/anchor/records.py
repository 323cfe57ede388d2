"""Anchors as recorded in the store (``ledger_anchors``): what was written to which chain."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from govern.ledger.anchor.base import AnchorReceipt
from govern.ledger.verify import AnchorRef
from govern.store.db import Database
from govern.store.models import LedgerAnchor, LedgerEntry, as_utc

# The kind of the entry that records an anchor (govern.events.AnchorRecorded).
ANCHOR_KIND = "ledger.anchor"

__all__ = ["ANCHOR_KIND", "AnchorRecord", "AnchorRecords"]


@dataclass(frozen=True)
class AnchorRecord:
    tree_size: int
    root_hash: bytes
    chain_id: int
    contract_address: str
    tx_hash: str
    block_number: int
    gas_used: int | None
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {**self.ref().to_json(), "anchored_at": self.created_at.isoformat()}

    def ref(self) -> AnchorRef:
        return AnchorRef(
            tree_size=self.tree_size,
            root_hash=self.root_hash,
            chain_id=self.chain_id,
            contract_address=self.contract_address,
            tx_hash=self.tx_hash,
            block_number=self.block_number,
        )


def _record(row: LedgerAnchor) -> AnchorRecord:
    created = row.created_at
    created = as_utc(created)
    return AnchorRecord(
        tree_size=int(row.tree_size),
        root_hash=bytes(row.root_hash),
        chain_id=int(row.chain_id),
        contract_address=row.contract_address,
        tx_hash=row.tx_hash,
        block_number=int(row.block_number),
        gas_used=None if row.gas_used is None else int(row.gas_used),
        created_at=created,
    )


class AnchorRecords:
    def __init__(self, db: Database) -> None:
        self.db = db

    def turn(self) -> AbstractContextManager[None]:
        """This process's turn to anchor: replicas sharing a store (and so a chain key) anchor
        one at a time, or their transactions would race for the key's nonce."""
        return self.db.exclusive("govern.ledger.anchor")

    def add(self, receipt: AnchorReceipt) -> tuple[AnchorRecord, bool]:
        """Record an anchor (inside the command's transaction): (the record, whether it is
        new). Recording one that is already there returns the stored row."""
        with self.db.session() as s:
            existing = s.scalar(
                select(LedgerAnchor).where(
                    LedgerAnchor.chain_id == receipt.chain_id,
                    LedgerAnchor.contract_address == receipt.contract_address,
                    LedgerAnchor.tree_size == receipt.tree_size,
                )
            )
            if existing is not None:
                # Another replica (or an earlier attempt whose answer was lost) recorded it.
                return _record(existing), False
            row = LedgerAnchor(
                tree_size=receipt.tree_size,
                root_hash=receipt.root,
                chain_id=receipt.chain_id,
                contract_address=receipt.contract_address,
                tx_hash=receipt.tx_hash,
                block_number=receipt.block_number,
                gas_used=receipt.gas_used,
                created_at=datetime.now(UTC),
            )
            s.add(row)
            s.flush()
            return _record(row), True

    def all(self) -> list[AnchorRecord]:
        with self.db.session() as s:
            rows = s.scalars(select(LedgerAnchor).order_by(LedgerAnchor.tree_size, LedgerAnchor.id))
            return [_record(r) for r in rows]

    def covering(self, tree_size: int) -> list[AnchorRecord]:
        """Anchors of trees that contain the first ``tree_size`` entries, nearest first."""
        with self.db.session() as s:
            rows = s.scalars(
                select(LedgerAnchor)
                .where(LedgerAnchor.tree_size >= tree_size)
                .order_by(LedgerAnchor.tree_size, LedgerAnchor.id)
                .limit(16)
            )
            return [_record(r) for r in rows]

    def latest(self, chain_id: int | None = None) -> AnchorRecord | None:
        query = select(LedgerAnchor).order_by(LedgerAnchor.tree_size.desc(), LedgerAnchor.id.desc())
        if chain_id is not None:
            query = query.where(LedgerAnchor.chain_id == chain_id)
        with self.db.session() as s:
            row = s.scalar(query.limit(1))
            return None if row is None else _record(row)

    def anchored_size(self) -> int:
        """The largest tree size anchored on any chain (0 if none)."""
        with self.db.session() as s:
            size = s.scalar(select(func.max(LedgerAnchor.tree_size)))
        return 0 if size is None else int(size)

    def log_size(self) -> int:
        """The size of the log up to its last entry that is not itself an anchor record,
        whoever appended it: what is left to anchor. Anchor records alone never make an anchor
        due, or every anchor would call for the next."""
        with self.db.session() as s:
            top = s.scalar(select(func.max(LedgerEntry.idx)).where(LedgerEntry.kind != ANCHOR_KIND))
        return 0 if top is None else int(top) + 1

    def entry_time(self, index: int) -> datetime | None:
        """When entry ``index`` was appended (the start of the anchoring lag), if it exists."""
        with self.db.session() as s:
            created = s.scalar(select(LedgerEntry.created_at).where(LedgerEntry.idx == index))
        if created is None:
            return None
        return as_utc(created)
