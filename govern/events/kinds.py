"""Every kind of event govern writes to its access log, one class each.

``docs/events.md`` is generated from these classes (``python -m govern.events``) and a test
fails when the two differ. Field types are JSON types; ``tuple`` fields are JSON arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from govern.events.base import Event

__all__ = [
    "AnchorRecorded",
    "AssessmentRecorded",
    "DataRewritten",
    "DatasetVersionAdded",
    "DecisionMade",
    "ErasureCompleted",
    "ErasureKeyed",
    "ErasureRequested",
    "JobAttemptStarted",
    "JobCancelled",
    "JobEnded",
    "JobRetried",
    "JobStateChanged",
    "JobSubmitted",
    "JobsEnqueued",
    "PolicyPut",
    "PrincipalDisabled",
    "PrincipalPut",
    "QualityRecorded",
    "ReadEnded",
    "ReadStarted",
    "RecipePut",
    "ReviewDecided",
    "RewriteFailed",
    "SuitePut",
    "TagsSet",
    "TokenIssued",
    "TokenRevoked",
    "TokensRevoked",
    "VersionAccepted",
]


def _version_ref(dataset: str, version: int) -> str:
    return f"dataset:{dataset}/v{version}"


# -- the data path ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DecisionMade(Event):
    """A Plan: who asked about which dataset for which purpose, and what was decided. The row
    filter holds policy constants and the principal's attributes, never a row's values."""

    kind = "decision"
    subject: str
    dataset: str
    dataset_version: int | None
    purpose: str
    decision: str
    row_filter: str | None
    row_filter_ast: Any
    columns: dict[str, str]
    obligations: tuple[str, ...]
    policy_version: int | None
    reasons: tuple[str, ...]

    def object_ref(self) -> str:
        return f"dataset:{self.dataset}"


@dataclass(frozen=True, kw_only=True)
class ReadStarted(Event):
    """A governed read began (the run is opened in the same transaction); no batch leaves
    before this entry is durable."""

    kind = "read"
    dataset: str
    version: int
    purpose: str
    run_id: str | None
    decision: int | None
    columns: tuple[str, ...]
    shard: tuple[int, ...] | None
    excluded_rows: int

    def object_ref(self) -> str:
        return f"run:{self.run_id}" if self.run_id else _version_ref(self.dataset, self.version)


@dataclass(frozen=True, kw_only=True)
class ReadEnded(Event):
    """A read's end: the rows and bytes delivered, recorded with the run's provenance."""

    kind = "read.end"
    read: int
    dataset: str
    version: int
    run_id: str | None
    rows: int
    bytes: int
    state: str

    def object_ref(self) -> str:
        return f"run:{self.run_id}" if self.run_id else _version_ref(self.dataset, self.version)


# -- policies, principals, tokens ------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PolicyPut(Event):
    """A new policy set version was stored; it is in force once this entry is durable."""

    kind = "policy.put"
    version: int
    sha256: str
    rules: int
    model_changed: bool

    def object_ref(self) -> str:
        return f"policy:{self.version}"


@dataclass(frozen=True, kw_only=True)
class PrincipalPut(Event):
    """A principal was created or replaced (roles and the attributes policies match on)."""

    kind = "principal.put"
    id: str
    roles: tuple[str, ...]
    attributes: dict[str, Any]
    created: bool

    def object_ref(self) -> str:
        return f"principal:{self.id}"


@dataclass(frozen=True, kw_only=True)
class PrincipalDisabled(Event):
    """A principal was disabled: its tokens stop working at once."""

    kind = "principal.disable"
    id: str

    def object_ref(self) -> str:
        return f"principal:{self.id}"


@dataclass(frozen=True, kw_only=True)
class TokenIssued(Event):
    """A bearer token was issued (its id, never the token)."""

    kind = "token.issue"
    jti: str
    subject: str
    role: str
    expires_at: str

    def object_ref(self) -> str:
        return f"token:{self.jti}"


@dataclass(frozen=True, kw_only=True)
class TokenRevoked(Event):
    kind = "token.revoke"
    jti: str
    subject: str

    def object_ref(self) -> str:
        return f"token:{self.jti}"


@dataclass(frozen=True, kw_only=True)
class TokensRevoked(Event):
    """Every live token of a principal was revoked."""

    kind = "token.revoke_all"
    subject: str
    jtis: tuple[str, ...]

    def object_ref(self) -> str:
        return f"principal:{self.subject}"


# -- datasets --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DatasetVersionAdded(Event):
    """A new immutable version, in the state it is served in (active or quarantined)."""

    kind = "dataset.version"
    dataset: str
    version: int
    rows: int
    sha256: str
    state: str
    format: str
    source: str
    erased_rows: int
    proposed_tags: tuple[tuple[Any, ...], ...] = field(default_factory=tuple)

    def object_ref(self) -> str:
        return _version_ref(self.dataset, self.version)


@dataclass(frozen=True, kw_only=True)
class QualityRecorded(Event):
    """A version's validation result: which expectations failed and how many rows (counts, not
    values)."""

    kind = "dataset.quality"
    dataset: str
    version: int
    suite_inferred: bool
    success: bool
    rows: int
    evaluated: int
    failed: tuple[dict[str, Any], ...]

    def object_ref(self) -> str:
        return _version_ref(self.dataset, self.version)


@dataclass(frozen=True, kw_only=True)
class VersionAccepted(Event):
    """A steward served a version that failed its suite."""

    kind = "dataset.accept"
    dataset: str
    version: int

    def object_ref(self) -> str:
        return _version_ref(self.dataset, self.version)


@dataclass(frozen=True, kw_only=True)
class SuitePut(Event):
    kind = "dataset.suite"
    dataset: str
    expectations: int
    sha256: str

    def object_ref(self) -> str:
        return f"dataset:{self.dataset}"


@dataclass(frozen=True, kw_only=True)
class TagsSet(Event):
    """A steward confirmed or edited a column's tags."""

    kind = "dataset.tags"
    dataset: str
    column: str
    tags: tuple[str, ...]

    def object_ref(self) -> str:
        return f"dataset:{self.dataset}"


# -- erasure ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ErasureRequested(Event):
    """A data subject's rows were withdrawn. The subject appears only as
    ``subject_commitment``: HMAC-SHA256 of the subject id under the deployment's commitment
    key, which is kept outside the log."""

    kind = "erasure.request"
    id: str
    subject_commitment: str
    datasets: tuple[str, ...] | None
    legal_basis: str
    excluded_rows: int
    versions: int

    def object_ref(self) -> str:
        return f"erasure:{self.id}"


@dataclass(frozen=True, kw_only=True)
class ErasureKeyed(Event):
    """A request made before subjects were kept as commitments got its subject's commitment
    (on upgrade), so it is found, and its cleartext removed, like every later one."""

    kind = "erasure.keyed"
    id: str
    subject_commitment: str

    def object_ref(self) -> str:
        return f"erasure:{self.id}"


@dataclass(frozen=True, kw_only=True)
class ErasureCompleted(Event):
    """Every job of a request ended well (or none was needed); the subject id in clear was
    removed from the store, the commitment stays."""

    kind = "erasure.complete"
    id: str
    subject_commitment: str
    jobs: int

    def object_ref(self) -> str:
        return f"erasure:{self.id}"


@dataclass(frozen=True, kw_only=True)
class DataRewritten(Event):
    """A version's file was rewritten without the rows erasure requests withdrew."""

    kind = "erasure.rewrite"
    dataset: str
    version: int
    requests: tuple[str, ...]
    rows_before: int
    rows_after: int
    sha256_before: str
    sha256_after: str

    def object_ref(self) -> str:
        return _version_ref(self.dataset, self.version)


@dataclass(frozen=True, kw_only=True)
class RewriteFailed(Event):
    kind = "erasure.rewrite_failed"
    dataset: str
    version: int
    requests: tuple[str, ...]
    error: str  # the exception's type name; the message stays in the store

    def object_ref(self) -> str:
        return _version_ref(self.dataset, self.version)


# -- compliance ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AssessmentRecorded(Event):
    """An assessment's verdicts. The facts are stored, not logged: the log keeps their names,
    a keyed digest of their values and the description's length."""

    kind = "compliance.assessment"
    id: str
    dataset: str | None
    purpose: str
    fact_names: tuple[str, ...]
    facts_digest: str
    description_chars: int
    verdicts: tuple[dict[str, Any], ...]
    reviews: dict[str, str]

    def object_ref(self) -> str:
        return f"assessment:{self.id}"


@dataclass(frozen=True, kw_only=True)
class ReviewDecided(Event):
    """A person's verdict on a review; the note is stored, the log keeps its length."""

    kind = "compliance.review"
    id: str
    assessment_id: str
    rule: str
    dataset: str | None
    purpose: str | None
    verdict: str
    note_chars: int

    def object_ref(self) -> str:
        return f"review:{self.id}"


# -- runs and jobs ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RecipePut(Event):
    """How a run was trained, registered so erasure can retrain or unlearn it."""

    kind = "run.recipe"
    run_id: str
    principal_id: str
    recipe: dict[str, Any]

    def object_ref(self) -> str:
        return f"run:{self.run_id}"


@dataclass(frozen=True, kw_only=True)
class JobsEnqueued(Event):
    """An erasure request's retrain and unlearn jobs were planned (``jobs`` empty when none
    was needed: the request then completes)."""

    kind = "job.enqueue"
    request: str
    jobs: tuple[str, ...]
    backend: str

    def object_ref(self) -> str:
        return f"erasure:{self.request}"


@dataclass(frozen=True, kw_only=True)
class JobAttemptStarted(Event):
    """An attempt id was chosen (before the submit, so a crash cannot submit twice) and a
    trainer token minted for it."""

    kind = "job.attempt"
    id: str
    attempt: int
    external_id: str
    backend: str
    token: str  # the token's id

    def object_ref(self) -> str:
        return f"job:{self.id}"


@dataclass(frozen=True, kw_only=True)
class JobSubmitted(Event):
    kind = "job.submit"
    id: str
    backend: str
    external_id: str
    attempt: int
    run_id: str
    principal: str

    def object_ref(self) -> str:
        return f"job:{self.id}"


@dataclass(frozen=True, kw_only=True)
class JobStateChanged(Event):
    """A job moved between waiting, submitted, running and retrying."""

    kind = "job.state"
    id: str
    state: str
    previous: str
    attempts: int

    def object_ref(self) -> str:
        return f"job:{self.id}"


@dataclass(frozen=True, kw_only=True)
class JobEnded(Event):
    kind = "job.end"
    id: str
    state: str
    run_id: str
    attempts: int

    def object_ref(self) -> str:
        return f"job:{self.id}"


@dataclass(frozen=True, kw_only=True)
class JobRetried(Event):
    """An admin gave a failed or cancelled job a fresh set of attempts."""

    kind = "job.retry"
    id: str
    was: str

    def object_ref(self) -> str:
        return f"job:{self.id}"


@dataclass(frozen=True, kw_only=True)
class JobCancelled(Event):
    kind = "job.cancel"
    id: str
    was: str

    def object_ref(self) -> str:
        return f"job:{self.id}"


# -- the ledger itself -----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AnchorRecorded(Event):
    """A checkpoint was written to a chain."""

    kind = "ledger.anchor"
    tree_size: int
    root_hash: str
    chain_id: int
    contract_address: str
    tx_hash: str
    block_number: int

    def object_ref(self) -> str:
        return f"anchor:{self.chain_id}/{self.tree_size}"
