"""dataset quality suites and results; tag provenance

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 14:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "quality_suites",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("suite", sa.JSON(), nullable=False),
        sa.Column("inferred", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_quality_suites_dataset_id_datasets"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quality_suites")),
        sa.UniqueConstraint("dataset_id", name=op.f("uq_quality_suites_dataset_id")),
    )
    op.create_table(
        "quality_results",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_by", sa.String(length=200), nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["dataset_versions.id"],
            name=op.f("fk_quality_results_version_id_dataset_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quality_results")),
        sa.UniqueConstraint("version_id", name=op.f("uq_quality_results_version_id")),
    )
    with op.batch_alter_table("column_tags", schema=None) as batch_op:
        batch_op.add_column(sa.Column("detector", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("score", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("rejected", sa.Boolean(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("column_tags", schema=None) as batch_op:
        batch_op.drop_column("rejected")
        batch_op.drop_column("score")
        batch_op.drop_column("detector")
    op.drop_table("quality_results")
    op.drop_table("quality_suites")
