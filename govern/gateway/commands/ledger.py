"""The access log's own changes: anchors written to a chain."""

from __future__ import annotations

from govern.events import AnchorRecorded
from govern.gateway.commands.base import CommandBase
from govern.ledger.anchor import AnchorRecord
from govern.ledger.anchor.base import AnchorReceipt
from govern.ledger.service import Tx

__all__ = ["ANCHOR_ACTOR", "LedgerCommands"]

ANCHOR_ACTOR = "govern-anchorer"


class LedgerCommands(CommandBase):
    def record_anchor(self, receipt: AnchorReceipt, actor: str = ANCHOR_ACTOR) -> AnchorRecord:
        """Record a checkpoint the anchorer wrote to a chain. Recording one already there (a
        replica, or an earlier attempt whose answer was lost) returns the stored record and
        logs nothing new."""

        def change(tx: Tx) -> AnchorRecord:
            record, created = self._p.anchors.add(receipt)
            if not created:
                tx.no_change()
                return record
            tx.emit(
                AnchorRecorded(
                    tree_size=record.tree_size,
                    root_hash=record.root_hash.hex(),
                    chain_id=record.chain_id,
                    contract_address=record.contract_address,
                    tx_hash=record.tx_hash,
                    block_number=record.block_number,
                )
            )
            return record

        return self._transact(actor, change).value
