"""the audited core: searchable log entries (actor, object) and erasure commitments

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 15:00:00.000000
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("actor", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("object", sa.String(length=300), nullable=True))
        batch_op.create_index(batch_op.f("ix_ledger_entries_actor"), ["actor"], unique=False)
        batch_op.create_index(batch_op.f("ix_ledger_entries_object"), ["object"], unique=False)
    with op.batch_alter_table("erasure_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subject_commitment", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.alter_column("subject_id", existing_type=sa.String(length=200), nullable=True)
        batch_op.create_index(
            batch_op.f("ix_erasure_requests_subject_commitment"),
            ["subject_commitment"],
            unique=False,
        )
    # Entries written before this revision: their actor (and object, where they had one)
    # copied out of the leaf, which stays as it was.
    conn = op.get_bind()
    entries = sa.table(
        "ledger_entries",
        sa.column("idx", sa.BigInteger),
        sa.column("leaf", sa.LargeBinary),
        sa.column("actor", sa.String),
        sa.column("object", sa.String),
    )
    rows = conn.execute(sa.select(entries.c.idx, entries.c.leaf)).all()
    for idx, leaf in rows:
        entry = json.loads(bytes(leaf))
        conn.execute(
            entries.update()
            .where(entries.c.idx == idx)
            .values(
                actor=str(entry.get("actor", ""))[:200] or None,
                object=str(entry["object"])[:300] if "object" in entry else None,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("erasure_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_erasure_requests_subject_commitment"))
        batch_op.alter_column("subject_id", existing_type=sa.String(length=200), nullable=False)
        batch_op.drop_column("completed_at")
        batch_op.drop_column("subject_commitment")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_entries_object"))
        batch_op.drop_index(batch_op.f("ix_ledger_entries_actor"))
        batch_op.drop_column("object")
        batch_op.drop_column("actor")
