"""unlearning jobs: backend state; erasure rewrite state

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 14:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("run_id", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("principal_id", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("external_id", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("token_jti", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_jobs_run_id"), ["run_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_jobs_next_attempt_at"), ["next_attempt_at"], unique=False
        )

    with op.batch_alter_table("dataset_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("original_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("original_row_count", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("rewritten_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("erasure_exclusions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "rewrite_state", sa.String(length=16), server_default="pending", nullable=False
            )
        )
        batch_op.add_column(sa.Column("rewrite_message", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("rewrite_sha256_before", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("rewrite_sha256_after", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("rewrite_rows_before", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("rewrite_rows_after", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("rewritten_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("erasure_exclusions", schema=None) as batch_op:
        for name in (
            "rewritten_at",
            "rewrite_rows_after",
            "rewrite_rows_before",
            "rewrite_sha256_after",
            "rewrite_sha256_before",
            "rewrite_message",
            "rewrite_state",
        ):
            batch_op.drop_column(name)

    with op.batch_alter_table("dataset_versions", schema=None) as batch_op:
        batch_op.drop_column("rewritten_at")
        batch_op.drop_column("original_row_count")
        batch_op.drop_column("original_sha256")

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_next_attempt_at"))
        batch_op.drop_index(batch_op.f("ix_jobs_run_id"))
        for name in (
            "token_jti",
            "finished_at",
            "started_at",
            "next_attempt_at",
            "external_id",
            "attempts",
            "principal_id",
            "run_id",
        ):
            batch_op.drop_column(name)
