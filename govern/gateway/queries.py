"""The read side: what the edges show, each view one method, with the checks that depend on
who asks (least privilege on the access log, run visibility). Nothing here writes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pyroaring import BitMap

from govern.auth import (
    Action,
    Caller,
    PrincipalRecord,
    PrincipalService,
    ensure_allowed,
    is_allowed,
)
from govern.catalog import Catalog, DatasetInfo
from govern.compliance import (
    AssessmentInfo,
    ComplianceService,
    ModelHolder,
    ModelStatus,
    ReviewInfo,
    Rule,
)
from govern.engine import Engine
from govern.errors import Forbidden, NotFound
from govern.events.commitment import Commitments
from govern.jobs import JobInfo, JobManager
from govern.ledger.anchor import Anchorer, AnchorRecord, AnchorRecords, AnchorStatus
from govern.ledger.canonical import parse_leaf
from govern.ledger.service import Ledger, StoredCheckpoint
from govern.ledger.verify import Bundle
from govern.plan import Plan
from govern.policy.loaded import LoadedPolicy
from govern.policy.service import PolicyService
from govern.policy.simulate import Change, simulate
from govern.provenance import SubjectLookup, SubjectRun, ensure_run_visible
from govern.provenance.store import ProvenanceStore, RunInfo, RunReadInfo
from govern.quality import QualityStore, ResultInfo, SuiteInfo
from govern.store import Database
from govern.unlearning import ErasureInfo, ErasureService
from govern.unlearning.recipes import RecipeInfo, RecipeStore
from govern.unlearning.rewrite import Rewriter, RewriteState
from govern.unlearning.strategies import UnlearningPlan, UnlearningPlanner

__all__ = ["Activity", "ErasureView", "LedgerEntryView", "Queries", "RunView"]

# How far back the overview looks, and how many entries it reads at most for it.
_ACTIVITY_MAX_ENTRIES = 50_000
# How many entries a search reads at most to fill a page when it filters on a data field.
_SEARCH_SCAN = 5_000


@dataclass(frozen=True)
class Activity:
    """What the gateway decided and served over the last minutes, from the log."""

    minutes: list[str]  # ISO minute starts, oldest first
    allowed: list[int]
    denied: list[int]
    deny_reasons: list[tuple[str, int]]  # most frequent first
    rows_served: list[tuple[str, str, int]]  # (dataset, purpose, rows), most rows first
    truncated: bool  # more entries than the overview reads fell in the window


@dataclass(frozen=True)
class RunView:
    """A training run: what it read, and how many of those rows were erased since."""

    run: RunInfo
    reads: list[RunReadInfo]
    erased: dict[int, int]  # version id -> rows the run read that erasure withdrew


@dataclass(frozen=True)
class ErasureView:
    """An erasure request with what it set in motion."""

    info: ErasureInfo
    affected_runs: list[SubjectRun]
    plan: UnlearningPlan
    jobs: list[JobInfo]
    rewrite: RewriteState


@dataclass(frozen=True)
class LedgerEntryView:
    index: int
    entry: dict[str, Any]
    leaf: bytes


class Queries:
    def __init__(
        self,
        *,
        db: Database,
        catalog: Catalog,
        quality: QualityStore,
        principals: PrincipalService,
        policy: PolicyService,
        engine: Engine,
        ledger: Ledger,
        anchors: AnchorRecords,
        anchorer: Anchorer | None,
        erasure: ErasureService,
        jobs: JobManager,
        rewriter: Rewriter,
        provenance: ProvenanceStore,
        recipes: RecipeStore,
        compliance: ComplianceService,
        commitments: Commitments,
        planner: UnlearningPlanner,
    ) -> None:
        self._db = db
        self._catalog = catalog
        self._quality = quality
        self._principals = principals
        self._policy = policy
        self._engine = engine
        self._ledger = ledger
        self._anchors = anchors
        self._anchorer = anchorer
        self._erasure = erasure
        self._jobs = jobs
        self._rewriter = rewriter
        self._provenance = provenance
        self._recipes = recipes
        self._compliance = compliance
        self._commitments = commitments
        self._planner = planner

    # -- health ----------------------------------------------------------------------------------

    def ping(self) -> None:
        """StoreUnavailable when the metadata store cannot be reached."""
        self._db.ping()

    def anchor_status(self) -> AnchorStatus | None:
        return self._anchorer.status() if self._anchorer is not None else None

    # -- datasets --------------------------------------------------------------------------------

    def datasets(self) -> list[DatasetInfo]:
        return self._catalog.all()

    def dataset(self, name: str, version: int | None = None) -> DatasetInfo:
        return self._catalog.get(name, version)

    def versions(self, name: str) -> list[DatasetInfo]:
        return self._catalog.versions(name)

    def quality_result(self, name: str, version: int) -> ResultInfo:
        return self._quality.result(name, version)

    def suite(self, name: str) -> SuiteInfo:
        return self._quality.get_suite(name)

    # -- principals and policies -----------------------------------------------------------------

    def principals(self) -> list[PrincipalRecord]:
        return self._principals.all()

    def principal(self, pid: str) -> PrincipalRecord:
        return self._principals.get(pid)

    def policy(self) -> LoadedPolicy:
        """The policy set in force."""
        return self._policy.current

    def simulate_policy(
        self, model: str | None, rules: Sequence[Sequence[Any]], purposes: Sequence[str] | None
    ) -> tuple[int | None, list[Change]]:
        """(the version in force, how each principal's Plans would change under the proposed
        set); an invalid set is a 422."""
        candidate = self._policy.validate(model, rules)
        changes = simulate(
            self._policy,
            candidate,
            self._principals.all(),
            self._catalog.all(),
            self._engine,
            purposes,
        )
        return self._policy.current.version, changes

    def plan_for(self, subject: dict[str, Any], info: DatasetInfo, purpose: str) -> Plan:
        """The Plan the set in force gives, without logging it (for policy tests)."""
        return self._policy.decide(
            subject=subject, dataset=info, action="read", purpose=purpose, columns=None
        )

    # -- the access log --------------------------------------------------------------------------

    def checkpoint(self) -> tuple[StoredCheckpoint, list[AnchorRecord]]:
        """The signed head, and the anchors of trees that contain every entry of it that is
        not itself an anchor record (an anchor's own entry always follows the anchored tree;
        a consistency proof links the two sizes)."""
        head = self._ledger.checkpoint()
        return head, self._anchors.covering(min(head.tree_size, self._anchors.log_size()))

    def anchors(self) -> list[AnchorRecord]:
        return self._anchors.all()

    def verifier_key(self) -> dict[str, str]:
        return self._ledger.public_key()

    def bundle(self, caller: Caller) -> Bundle:
        """Every entry, hash, signed checkpoint and anchor: other principals' entries too, so
        for auditors, compliance officers and admins only."""
        ensure_allowed(caller.role, Action.LEDGER_READ_ALL)
        self._ledger.checkpoint()
        data = self._ledger.bundle()
        data.anchors = [a.ref() for a in self._anchors.all()]
        return data

    def ledger_entries(
        self,
        caller: Caller,
        *,
        start: int = 0,
        limit: int = 100,
        actor: str | None = None,
        kind: str | None = None,
        object_ref: str | None = None,
    ) -> list[LedgerEntryView]:
        """Entries from ``start`` on, oldest first, matching the filters. A caller who may not
        read every entry sees only its own (it is their actor)."""
        actor = _actor_in_scope(caller, actor, "read")
        rows = self._ledger.leaves(start, limit, actor=actor, kind=kind, object_ref=object_ref)
        return [LedgerEntryView(i, parse_leaf(leaf), leaf) for i, leaf in rows]

    def ledger_entry(self, caller: Caller, index: int) -> LedgerEntryView:
        """One entry: the caller's own, or any for those who may read every entry. Another's
        entry is a 403 (its existence is no secret: proofs and the tree size show it)."""
        entry, leaf = self._ledger.entry(index)
        if entry.get("actor") != caller.id and not is_allowed(caller.role, Action.LEDGER_READ_ALL):
            raise Forbidden(
                f"entry {index} belongs to another principal; role {caller.role!r} may read "
                "only its own",
                details={"index": index, "action": Action.LEDGER_READ_ALL.value},
            )
        return LedgerEntryView(index, entry, leaf)

    def log_size(self) -> int:
        return self._ledger.refresh()

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        return self._ledger.inclusion_proof(index, tree_size)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        return self._ledger.consistency_proof(first, second)

    def root(self, tree_size: int) -> bytes:
        return self._ledger.tree.root(tree_size)

    def activity(self, caller: Caller, minutes: int = 60) -> Activity:
        """Decisions per minute (allowed and denied), the top deny reasons, and rows served per
        dataset and purpose, over the last ``minutes`` (every principal's: auditor, compliance,
        admin)."""
        ensure_allowed(caller.role, Action.LEDGER_READ_ALL)
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        since = now - timedelta(minutes=minutes - 1)
        rows = self._ledger.leaves(
            0,
            _ACTIVITY_MAX_ENTRIES + 1,
            kinds=("decision", "read", "read.end"),
            since=since,
            newest_first=True,
        )
        truncated = len(rows) > _ACTIVITY_MAX_ENTRIES
        labels = [(since + timedelta(minutes=m)).isoformat() for m in range(minutes)]
        allowed, denied = [0] * minutes, [0] * minutes
        reasons: Counter[str] = Counter()
        purposes: dict[int, str] = {}
        ends: list[dict[str, Any]] = []
        for index, leaf in rows[:_ACTIVITY_MAX_ENTRIES]:
            entry = parse_leaf(leaf)
            data = entry["data"]
            if entry["kind"] == "read":
                purposes[index] = str(data.get("purpose"))
            elif entry["kind"] == "read.end":
                ends.append(data)
            else:
                at = datetime.fromisoformat(entry["time"])
                slot = int((at - since).total_seconds() // 60)
                if 0 <= slot < minutes:
                    if data.get("decision") == "allow":
                        allowed[slot] += 1
                    else:
                        denied[slot] += 1
                        reasons[str((data.get("reasons") or ["no reason"])[0])[:200]] += 1
        served: Counter[tuple[str, str]] = Counter()
        for data in ends:
            read = int(data.get("read", -1))
            if read not in purposes and read >= 0:
                try:
                    purposes[read] = str(self._ledger.entry(read)[0]["data"].get("purpose"))
                except NotFound:
                    purposes[read] = "?"
            served[(str(data.get("dataset")), purposes.get(read, "?"))] += int(data.get("rows", 0))
        return Activity(
            minutes=labels,
            allowed=allowed,
            denied=denied,
            deny_reasons=reasons.most_common(10),
            rows_served=[(d, p, n) for (d, p), n in served.most_common()],
            truncated=truncated,
        )

    def search_log(
        self,
        caller: Caller,
        *,
        actor: str | None = None,
        kind: str | None = None,
        dataset: str | None = None,
        run: str | None = None,
        purpose: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: int = 0,
        limit: int = 50,
    ) -> list[LedgerEntryView]:
        """Entries newest first (below index ``before`` when it is above 0) by actor, kind,
        dataset, run, purpose and time. A caller who may not read every entry searches its
        own."""
        actor = _actor_in_scope(caller, actor, "search")
        prefix = f"dataset:{dataset}" if dataset else None
        rows = self._ledger.leaves(
            before,
            _SEARCH_SCAN if purpose or dataset else limit,
            actor=actor or None,
            kind=kind or None,
            object_ref=f"run:{run}" if run else None,
            object_prefix=prefix,
            since=since,
            until=until,
            newest_first=True,
        )
        out = []
        for index, leaf in rows:
            entry = parse_leaf(leaf)
            obj = str(entry["object"])
            if prefix and obj != prefix and not obj.startswith(f"{prefix}/"):
                continue  # "dataset:notes" must not match "dataset:notes_v2"
            if purpose and entry["data"].get("purpose") != purpose:
                continue
            out.append(LedgerEntryView(index, entry, leaf))
            if len(out) == limit:
                break
        return out

    def checkpoints(self, limit: int = 50) -> list[StoredCheckpoint]:
        """Signed checkpoints, newest first."""
        return list(reversed(self._ledger.checkpoints()))[:limit]

    # -- erasure, runs, jobs ---------------------------------------------------------------------

    def subject_erasures(self, caller: Caller, subject_id: str) -> list[LedgerEntryView]:
        """The log's ``erasure.request`` and ``erasure.complete`` entries for one data subject,
        found by recomputing the subject's commitment with the deployment's key: how an
        auditor who holds the key checks that a person's request was honoured, while the log
        itself names nobody."""
        ensure_allowed(caller.role, Action.LEDGER_READ_ALL)
        commitment = self._commitments.subject(subject_id)
        found = []
        for kind in ("erasure.request", "erasure.complete"):
            start = 0
            while True:
                page = self.ledger_entries(caller, start=start, limit=1000, kind=kind)
                found += [
                    v for v in page if v.entry["data"].get("subject_commitment") == commitment
                ]
                if len(page) < 1000:
                    break
                start = page[-1].index + 1
        return sorted(found, key=lambda v: v.index)

    def erasure_requests(self) -> list[ErasureInfo]:
        return self._erasure.all()

    def erasure_request(self, rid: str) -> ErasureView:
        info = self._erasure.get(rid)
        runs, plan = self._planner.plan(info.id)
        return ErasureView(
            info=info,
            affected_runs=runs,
            plan=plan,
            jobs=self._jobs.for_request(info.id),
            rewrite=self._rewriter.state(info.id),
        )

    def jobs(self, request_id: str | None = None, limit: int = 1000) -> list[JobInfo]:
        return self._jobs.for_request(request_id) if request_id else self._jobs.all(limit)

    def job(self, job_id: str) -> JobInfo:
        return self._jobs.get(job_id)

    def job_output(self, job: JobInfo) -> str | None:
        """The end of a local job's output (None for other backends)."""
        return self._jobs.output_tail(job)

    def run(self, caller: Caller, run_id: str) -> tuple[RunInfo, list[RunReadInfo]]:
        """A run and what it read: its own principal's, or any for reviewers."""
        run = self._provenance.get_run(run_id)
        ensure_run_visible(caller, run)
        return run, self._provenance.reads(run_id)

    def runs(self, limit: int = 200) -> list[RunInfo]:
        """Training runs, newest first."""
        return self._provenance.recent_runs(limit)

    def run_view(self, caller: Caller, run_id: str) -> RunView:
        """What a run read, and how many of those rows erasure requests withdrew since."""
        run, reads = self.run(caller, run_id)
        erased = {}
        for r in reads:
            excluded = self._erasure.excluded(r.version_id)
            if excluded:
                erased[r.version_id] = len(
                    self._provenance.row_ids(run_id, r.version_id) & BitMap(excluded)
                )
        return RunView(run, reads, erased)

    def run_rows(self, run_id: str, version_id: int) -> BitMap:
        """The row ids of a version the run received."""
        return self._provenance.row_ids(run_id, version_id)

    def excluded_rows(self, version_id: int) -> frozenset[int]:
        """Row ids of a version that erasure requests withdrew."""
        return self._erasure.excluded(version_id)

    def runs_for_subject(
        self, subject_id: str, datasets: Sequence[str] | None = None
    ) -> list[SubjectRun]:
        lookup = SubjectLookup(self._provenance)
        try:
            return lookup.runs_for_subject(subject_id, datasets)
        finally:
            lookup.close()

    def recipe(self, caller: Caller, run_id: str) -> RecipeInfo:
        """A run's recipe, for its owner and for reviewers (others: as if it did not exist)."""
        info = self._recipes.get(run_id)
        if info is None or (
            info.principal_id != caller.id
            and not (
                is_allowed(caller.role, Action.RUNS_READ)
                or is_allowed(caller.role, Action.RECIPES_ANY)
            )
        ):
            raise NotFound(f"no recipe for run {run_id[:200]!r}", details={"run_id": run_id[:200]})
        return info

    # -- compliance ------------------------------------------------------------------------------

    def rules(self) -> list[Rule]:
        return self._compliance.rules()

    def language_model(self) -> ModelHolder | None:
        """The compliance checks' language model (loading state, readiness)."""
        return self._compliance.models

    def model_status(self) -> ModelStatus | None:
        """The language model's state for /readyz and /metrics (never starts a load)."""
        holder = self._compliance.models
        return holder.status() if holder is not None else None

    def assessment(self, aid: str) -> AssessmentInfo:
        return self._compliance.get(aid)

    def assessments(self, limit: int = 200) -> list[AssessmentInfo]:
        """Assessments, newest first, with their reviews."""
        return self._compliance.assessments(limit)

    def reviews(self, state: str | None = "open", limit: int = 500) -> list[ReviewInfo]:
        return self._compliance.reviews(state, limit)


def _actor_in_scope(caller: Caller, actor: str | None, verb: str) -> str | None:
    """The actor filter a caller may use: any for those who may read every entry, else only
    its own (the default for them)."""
    if is_allowed(caller.role, Action.LEDGER_READ_ALL):
        return actor
    if actor is not None and actor != caller.id:
        raise Forbidden(
            f"role {caller.role!r} may {verb} only its own log entries",
            details={"role": caller.role, "action": Action.LEDGER_READ_ALL.value},
        )
    return caller.id
