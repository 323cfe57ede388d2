"""erasure exclusions

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 13:45:12.891466
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erasure_exclusions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("row_ids", sa.LargeBinary(), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["erasure_requests.id"],
            name=op.f("fk_erasure_exclusions_request_id_erasure_requests"),
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["dataset_versions.id"],
            name=op.f("fk_erasure_exclusions_version_id_dataset_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasure_exclusions")),
        sa.UniqueConstraint(
            "request_id", "version_id", name=op.f("uq_erasure_exclusions_request_id")
        ),
    )
    with op.batch_alter_table("erasure_exclusions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_erasure_exclusions_request_id"), ["request_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_erasure_exclusions_version_id"), ["version_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("erasure_exclusions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_erasure_exclusions_version_id"))
        batch_op.drop_index(batch_op.f("ix_erasure_exclusions_request_id"))

    op.drop_table("erasure_exclusions")
