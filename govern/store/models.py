"""SQLAlchemy models: the metadata store's schema. Every change here needs an Alembic migration
(``tests/integration/test_migrations.py`` fails when the two drift)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Assessment",
    "Base",
    "ChangeStamp",
    "ColumnTag",
    "Dataset",
    "DatasetColumn",
    "DatasetVersion",
    "ErasureExclusion",
    "ErasureRequest",
    "Job",
    "LedgerAnchor",
    "LedgerCheckpoint",
    "LedgerEntry",
    "LedgerNode",
    "PolicySet",
    "Principal",
    "QualityResult",
    "QualitySuite",
    "Review",
    "Run",
    "RunRead",
    "RunRecipe",
    "RunShard",
    "Token",
    "as_utc",
    "utcnow",
]

# Named constraints keep migrations identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(t: datetime) -> datetime:
    """A stored time with its zone: every time is written in UTC, and SQLite gives it back
    without one."""
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class ChangeStamp(Base):
    """One row whose counter every change of state bumps, in the change's own transaction
    (``Ledger.transact``). A cache that remembers the counter it was filled at is exact: it is
    stale exactly when the counter moved, whichever process made the change."""

    __tablename__ = "change_stamp"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(BigInteger)


class Principal(Base):
    __tablename__ = "principals"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    roles: Mapped[list[Any]] = mapped_column(JSON, default=list)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Token(Base):
    __tablename__ = "tokens"
    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Dataset(Base):
    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    subject_column: Mapped[str] = mapped_column(String(63))
    description: Mapped[str] = mapped_column(Text, default="")
    # Per-dataset salt for the hash mask, so hashed values do not join across datasets.
    mask_salt: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    versions: Mapped[list[DatasetVersion]] = relationship(
        back_populates="dataset", order_by="DatasetVersion.version"
    )
    tags: Mapped[list[ColumnTag]] = relationship(back_populates="dataset")


class DatasetVersion(Base):
    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    row_count: Mapped[int] = mapped_column(BigInteger)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    # active: served; quarantined: failed quality, waits for a steward; retired: superseded.
    state: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Set when an erasure rewrite removed rows from the file (sha256/row_count/size_bytes then
    # describe the rewritten file; these keep what was registered).
    original_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    original_row_count: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    rewritten_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    dataset: Mapped[Dataset] = relationship(back_populates="versions")
    columns: Mapped[list[DatasetColumn]] = relationship(
        back_populates="version", order_by="DatasetColumn.position"
    )


class DatasetColumn(Base):
    __tablename__ = "dataset_columns"
    __table_args__ = (UniqueConstraint("version_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    type: Mapped[str] = mapped_column(String(32))
    position: Mapped[int] = mapped_column(Integer)
    nullable: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[DatasetVersion] = relationship(back_populates="columns")


class ColumnTag(Base):
    """Tags belong to a dataset's column by name, so they carry over to new versions."""

    __tablename__ = "column_tags"
    __table_args__ = (UniqueConstraint("dataset_id", "column_name", "tag"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    column_name: Mapped[str] = mapped_column(String(63))
    tag: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(16), default="steward")
    confirmed: Mapped[bool] = mapped_column(Boolean, default=True)
    # Provenance of a detector's proposal: which recognizer, how sure (share of sampled values).
    detector: Mapped[str | None] = mapped_column(String(64), nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    # A proposal a steward removed: kept (and not applied) so the detector does not re-propose it.
    rejected: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    dataset: Mapped[Dataset] = relationship(back_populates="tags")


class QualitySuite(Base):
    """A dataset's Great Expectations suite (``{"expectations": [{"type", "kwargs"}, ...]}``)."""

    __tablename__ = "quality_suites"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), unique=True)
    suite: Mapped[dict[str, Any]] = mapped_column(JSON)
    inferred: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class QualityResult(Base):
    """The validation of one dataset version against its dataset's suite at ingestion."""

    __tablename__ = "quality_results"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), unique=True)
    success: Mapped[bool] = mapped_column(Boolean)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Set when a steward accepted a version that failed its suite.
    accepted_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    accepted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class PolicySet(Base):
    """One immutable, numbered policy set; the highest id is the one in force."""

    __tablename__ = "policy_sets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(Text)
    rules: Mapped[list[Any]] = mapped_column(JSON)
    sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    leaf: Mapped[bytes] = mapped_column(LargeBinary)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    # Copies of the leaf's actor and object, so the log is searched without parsing leaves;
    # the leaf is what proofs cover.
    actor: Mapped[str | None] = mapped_column(String(200), index=True, nullable=True)
    object: Mapped[str | None] = mapped_column(String(300), index=True, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LedgerNode(Base):
    """Perfect-subtree hashes of the Merkle tree, keyed (level, index); leaves are level 0.

    Kept so proofs read O(log n) rows. Level-0 rows also record each leaf's hash as appended,
    which lets ``ledger verify`` name the exact entry that was altered afterwards.
    """

    __tablename__ = "ledger_nodes"
    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class LedgerCheckpoint(Base):
    """A signed tree head (C2SP signed note), one per tree size that was checkpointed."""

    __tablename__ = "ledger_checkpoints"
    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LedgerAnchor(Base):
    """A signed checkpoint's root as written to an Ethereum chain's Anchor contract.

    One row per (chain, contract, tree size): the same checkpoint may be anchored on more than
    one chain. The tree size refers to the signed checkpoint that was anchored.
    """

    __tablename__ = "ledger_anchors"
    __table_args__ = (UniqueConstraint("chain_id", "contract_address", "tree_size"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tree_size: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("ledger_checkpoints.tree_size"), index=True
    )
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    chain_id: Mapped[int] = mapped_column(BigInteger)
    contract_address: Mapped[str] = mapped_column(String(42))
    tx_hash: Mapped[str] = mapped_column(String(66))
    block_number: Mapped[int] = mapped_column(BigInteger)
    gas_used: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    principal_id: Mapped[str] = mapped_column(String(200), index=True)
    purpose: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RunRead(Base):
    """Which rows of which dataset version a run received, as a serialised roaring bitmap."""

    __tablename__ = "run_reads"
    __table_args__ = (UniqueConstraint("run_id", "version_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), index=True)
    row_ids: Mapped[bytes] = mapped_column(LargeBinary)
    row_count: Mapped[int] = mapped_column(BigInteger)


class RunRecipe(Base):
    """How a run was trained, so that an erasure can re-run it (``govern.unlearning.recipes``)."""

    __tablename__ = "run_recipes"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    recipe: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The run that retrained this one; its model replaces this run's model.
    superseded_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    registered_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RunShard(Base):
    """A run that trained one shard of a sharded (SISA) model, current or superseded."""

    __tablename__ = "run_shards"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    model_run_id: Mapped[str] = mapped_column(ForeignKey("run_recipes.run_id"), index=True)
    shard: Mapped[int] = mapped_column(Integer)


class ErasureRequest(Base):
    __tablename__ = "erasure_requests"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # In clear only until the request completes (invariant 8); the commitment stays.
    subject_id: Mapped[str | None] = mapped_column(String(200), index=True, nullable=True)
    subject_commitment: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    datasets: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    legal_basis: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(32))
    excluded_rows: Mapped[int] = mapped_column(BigInteger, default=0)
    requested_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # When the request completed (its cleartext subject id was removed then).
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ErasureExclusion(Base):
    """The row ids of one dataset version that an erasure request withdrew (roaring bitmap)."""

    __tablename__ = "erasure_exclusions"
    __table_args__ = (UniqueConstraint("request_id", "version_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("erasure_requests.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), index=True)
    row_ids: Mapped[bytes] = mapped_column(LargeBinary)
    row_count: Mapped[int] = mapped_column(BigInteger)
    # The background rewrite that removes these rows from the file: pending, done or failed.
    rewrite_state: Mapped[str] = mapped_column(
        String(16), default="pending", server_default="pending"
    )
    rewrite_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    rewrite_sha256_before: Mapped[str | None] = mapped_column(String(64), nullable=True)
    rewrite_sha256_after: Mapped[str | None] = mapped_column(String(64), nullable=True)
    rewrite_rows_before: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    rewrite_rows_after: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    rewritten_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    erasure_request_id: Mapped[str | None] = mapped_column(
        ForeignKey("erasure_requests.id"), nullable=True, index=True
    )
    backend: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(32))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The training run the job repairs and whose token it reads with (see govern.jobs).
    run_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    principal_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Submissions so far; the backend's id of the latest; when the next try is due.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    external_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True, index=True
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The id (not the token) of the bearer token minted for the latest attempt, to revoke it.
    token_jti: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Assessment(Base):
    __tablename__ = "assessments"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    dataset: Mapped[str | None] = mapped_column(String(63), nullable=True, index=True)
    purpose: Mapped[str] = mapped_column(String(100))
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    verdicts: Mapped[list[Any]] = mapped_column(JSON, default=list)
    requested_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Review(Base):
    __tablename__ = "reviews"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    assessment_id: Mapped[str] = mapped_column(ForeignKey("assessments.id"), index=True)
    rule: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(16), default="open")
    verdict: Mapped[str | None] = mapped_column(String(32), nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    reviewer: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
