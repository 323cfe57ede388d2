"""ledger anchors

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 12:18:30.543771
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_anchors",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("contract_address", sa.String(length=42), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("gas_used", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tree_size"],
            ["ledger_checkpoints.tree_size"],
            name=op.f("fk_ledger_anchors_tree_size_ledger_checkpoints"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_anchors")),
        sa.UniqueConstraint(
            "chain_id", "contract_address", "tree_size", name=op.f("uq_ledger_anchors_chain_id")
        ),
    )
    with op.batch_alter_table("ledger_anchors", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ledger_anchors_tree_size"), ["tree_size"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("ledger_anchors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_anchors_tree_size"))

    op.drop_table("ledger_anchors")
