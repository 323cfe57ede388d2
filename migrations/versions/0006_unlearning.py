"""unlearning: run recipes and the shards of sharded (SISA) models

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 14:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "run_recipes",
        sa.Column("run_id", sa.String(length=200), nullable=False),
        sa.Column("recipe", sa.JSON(), nullable=False),
        sa.Column("superseded_by", sa.String(length=200), nullable=True),
        sa.Column("registered_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_recipes_run_id_runs")),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_run_recipes")),
    )
    op.create_table(
        "run_shards",
        sa.Column("run_id", sa.String(length=200), nullable=False),
        sa.Column("model_run_id", sa.String(length=200), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_run_id"],
            ["run_recipes.run_id"],
            name=op.f("fk_run_shards_model_run_id_run_recipes"),
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_shards_run_id_runs")),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_run_shards")),
    )
    with op.batch_alter_table("run_shards", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_run_shards_model_run_id"), ["model_run_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("run_shards", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_run_shards_model_run_id"))

    op.drop_table("run_shards")
    op.drop_table("run_recipes")
