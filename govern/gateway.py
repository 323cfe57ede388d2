"""Wires the parts together once per process. REST, Flight and the CLI all hold one Gateway,
and ask it for decisions, so there is one path from a request to a Plan."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from govern.auth import Action, Caller, PrincipalService, TokenService, is_allowed
from govern.catalog import Catalog, DatasetInfo
from govern.compliance import ComplianceService, open_compliance
from govern.engine import Engine
from govern.errors import Conflict, Forbidden, GovernError, NotFound, PrincipalNotFound
from govern.jobs import JobManager, Worker
from govern.ledger.anchor import Anchorer, AnchorRecords, open_chain
from govern.ledger.service import Ledger
from govern.policy.plan import Plan
from govern.policy.service import PolicyService
from govern.policy.watcher import StoreWatcher
from govern.provenance import SubjectLookup, SubjectRun
from govern.provenance.reads import GovernedRead, ReadRequest, open_read
from govern.provenance.store import ProvenanceStore
from govern.quality import Ingestor, IngestResult, QualityStore, SuiteInfo
from govern.settings import Settings
from govern.store import Database
from govern.unlearning import ErasureInfo, ErasureService
from govern.unlearning.recipes import RecipeBody, RecipeInfo, RecipeStore
from govern.unlearning.rewrite import Rewriter
from govern.unlearning.strategies import UnlearningPlan, plan_unlearning

__all__ = ["DecisionRequest", "Gateway"]


@dataclass(frozen=True)
class DecisionRequest:
    dataset: str
    purpose: str
    action: str = "read"
    subject_id: str | None = None
    role: str | None = None
    columns: Sequence[str] | None = None
    sent_attributes: Mapping[str, Any] | None = None
    # A pinned dataset version; None decides against the newest active one.
    version: int | None = None


@dataclass
class Gateway:
    settings: Settings
    db: Database
    catalog: Catalog
    principals: PrincipalService
    tokens: TokenService
    policy: PolicyService
    engine: Engine
    watcher: StoreWatcher | None = None
    anchorer: Anchorer | None = None
    _ledger: Ledger | None = field(default=None, repr=False)
    _ledger_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _jobs: JobManager | None = field(default=None, repr=False)
    # Background threads of a serving gateway: the job reconciler and the erasure rewrite.
    workers: list[Worker] = field(default_factory=list, repr=False)
    _compliance: ComplianceService | None = field(default=None, repr=False)

    @classmethod
    def open(
        cls, settings: Settings, *, watch: bool = False, anchor: bool | None = None
    ) -> Gateway:
        """``watch``: follow policy changes (serving). ``anchor`` (default: as ``watch``): run
        the anchorer that writes checkpoints to the configured chain."""
        settings.home.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url)
        gateway = cls(
            settings=settings,
            db=db,
            catalog=Catalog(db, settings.datasets_dir),
            principals=PrincipalService(db),
            tokens=TokenService(db, settings.token_secret, settings.token_ttl_seconds),
            policy=PolicyService(db),
            engine=Engine(),
        )
        if watch and settings.policy_watcher != "none":
            gateway.watcher = StoreWatcher(
                settings.resolved_database_url, settings.policy_poll_seconds
            )
            gateway.watcher.set_update_callback(gateway.policy.reload)
        if (watch if anchor is None else anchor) and settings.chain_backend != "none":
            gateway.anchorer = Anchorer(
                lambda: gateway.ledger,
                lambda: open_chain(settings),
                gateway.anchors,
                every_entries=settings.anchor_every_entries,
                every_seconds=settings.anchor_every_seconds,
            )
            gateway.anchorer.start()
        if watch:
            gateway.start_workers()
        # A bad rule file is a start-up error naming the file (the model loads on first use).
        gateway.compliance.start(load_model=False)
        return gateway

    def start_workers(self) -> None:
        """Start the job reconciler (it first resumes every job left unfinished by an earlier
        process) and, unless disabled, the background rewrite of erased rows."""
        poll = self.settings.jobs_poll_seconds
        if self.settings.jobs_backend != "none":
            reconciler = Worker("govern-jobs", self.jobs.tick, poll)
            self.jobs.wake = reconciler.wake
            self.workers.append(reconciler)
        if self.settings.erasure_rewrite:
            self.workers.append(Worker("govern-rewrite", self.rewriter.tick, poll))
        for worker in self.workers:
            worker.start()

    @property
    def jobs(self) -> JobManager:
        """Retrain and unlearn jobs (``govern.jobs``); one manager per gateway."""
        with self._ledger_lock:
            if self._jobs is None:
                self._jobs = JobManager(self.db, self.settings, self.tokens, log_event=self.log)
            return self._jobs

    @functools.cached_property
    def rewriter(self) -> Rewriter:
        """Removes erased rows from the data files (``govern.unlearning.rewrite``); one per
        gateway, so its passes never overlap within a process."""
        return Rewriter(self.db, log_event=self.log)

    @property
    def ledger(self) -> Ledger:
        """Opened on first use: it reads the tree's edge from the store, which may be down."""
        with self._ledger_lock:
            if self._ledger is None:
                self._ledger = Ledger(
                    self.db, self.settings.keys_dir / "ledger.pem", self.settings.ledger_origin
                )
            return self._ledger

    @property
    def anchors(self) -> AnchorRecords:
        """The anchors recorded in the store (whether or not this process anchors)."""
        return AnchorRecords(self.db)

    def put_policy(self, model: str | None, rules: Sequence[Sequence[Any]], actor: str) -> int:
        """Validate aside, store, swap in, tell replicas, and log the change."""
        version = self.policy.put(model, rules, by=actor)
        if self.watcher is not None:
            self.watcher.update()
        stored = self.policy.store.get(version)
        self.log(
            "policy.put",
            {"version": version, "sha256": stored.sha256 if stored else None, "rules": len(rules)},
            actor,
        )
        return version

    @property
    def provenance(self) -> ProvenanceStore:
        """Runs and the row ids each received (stateless; shares one merge lock per process)."""
        return ProvenanceStore(self.db)

    @property
    def erasure(self) -> ErasureService:
        return ErasureService(self.db, self.catalog)

    def excluded_rows(self, info: DatasetInfo) -> frozenset[int]:
        """Row ids of this version never to be served again (erasure requests), read from the
        store on every read so that every replica honours a request at once."""
        return self.erasure.excluded(info.version_id)

    def request_erasure(
        self, subject_id: str, datasets: Sequence[str] | None, legal_basis: str, actor: str
    ) -> ErasureInfo:
        """Withdraw the subject's rows (effective before this returns) and log the request."""
        info = self.erasure.request(subject_id, datasets, legal_basis, actor)
        if info.created:
            self.log(
                "erasure.request",
                {
                    "id": info.id,
                    "subject_id": subject_id,
                    "datasets": list(info.datasets) if info.datasets else None,
                    "legal_basis": legal_basis,
                    "excluded_rows": info.excluded_rows,
                },
                actor,
            )
        # The rows are already withheld; now the jobs that make the models that read them
        # forget. Planning is deterministic and enqueue idempotent, so a repeated request
        # plans again and adds only what is missing (e.g. after a crash right here).
        if info.excluded_rows:
            self.jobs.enqueue(info.id, self.unlearning_plan(info).specs)
            # Enqueueing moves the request on (planned, or completed when no job is needed).
            info = replace(self.erasure.get(info.id), created=info.created)
        return info

    @property
    def recipes(self) -> RecipeStore:
        return RecipeStore(self.db, self.provenance)

    def put_recipe(self, caller: Caller, run_id: str, body: RecipeBody) -> RecipeInfo:
        """Register how a run was trained (its owner, or an admin), and log it."""
        info = self.recipes.put(caller, run_id, body, self.settings.unlearning_trainers)
        self.log(
            "run.recipe",
            {
                "run_id": run_id,
                "principal_id": info.principal_id,
                "recipe": info.recipe.to_json(),
            },
            caller.id,
        )
        return info

    def get_recipe(self, caller: Caller, run_id: str) -> RecipeInfo:
        """A run's recipe, for its owner and for reviewers (others: as if it did not exist)."""
        info = self.recipes.get(run_id)
        if info is None:
            raise NotFound(f"no recipe for run {run_id[:200]!r}", details={"run_id": run_id[:200]})
        if info.principal_id != caller.id and not (
            is_allowed(caller.role, Action.RUNS_READ) or is_allowed(caller.role, Action.RECIPES_ANY)
        ):
            raise NotFound(f"no recipe for run {run_id[:200]!r}", details={"run_id": run_id[:200]})
        return info

    def affected_runs(self, info: ErasureInfo) -> list[SubjectRun]:
        """The runs that received rows this request withdrew, from its stored exclusions: they
        stay right after the background rewrite removed the rows from the files."""
        lookup = SubjectLookup(self.provenance)
        try:
            return lookup.runs_reading(self.erasure.exclusions(info.id))
        finally:
            lookup.close()

    def unlearning_plan(
        self, info: ErasureInfo, affected: Sequence[SubjectRun] | None = None
    ) -> UnlearningPlan:
        """What the request does about each run that read the subject's rows (``affected``,
        looked up when not given), and its jobs."""
        if affected is None:
            affected = self.affected_runs(info)
        return plan_unlearning(
            info.id,
            affected,
            self.recipes,
            mode=self.settings.unlearning_strategy,
            workdir=self.settings.unlearning_workdir,
        )

    # -- ingestion -----------------------------------------------------------------------------

    @property
    def quality(self) -> QualityStore:
        return QualityStore(self.db)

    def ingest(
        self,
        name: str,
        path: Path,
        subject_column: str,
        actor: str,
        *,
        filename: str | None = None,
        description: str = "",
        unique_columns: Sequence[str] = (),
        progress: Callable[[str, int, int], None] | None = None,
    ) -> IngestResult:
        """Register an uploaded file as a new version (see ``govern.quality.ingest``).

        The version commits as ``pending`` (never served), open erasure requests are applied
        to it, the version and its validation are logged, and only then does it become
        ``active`` (or ``quarantined`` when its suite failed)."""
        from govern.catalog.sensitive import SensitiveDataDetector

        ingestor = Ingestor(
            self.catalog,
            self.quality,
            SensitiveDataDetector(self.settings.detect_sample_rows),
            self.settings.quality_chunk_rows,
        )
        result = ingestor.ingest(
            name,
            path,
            subject_column,
            actor,
            filename=filename,
            description=description,
            unique_columns=unique_columns,
            progress=progress,
        )
        info = result.info
        # Erasure requests made before this version arrived hold for it too (invariant 5).
        erased = self.erasure.apply_to_version(info)
        final = "active" if result.report.success else "quarantined"
        self.ledger.append_many(
            [
                (
                    "dataset.version",
                    {
                        "dataset": info.name,
                        "version": info.version,
                        "rows": info.row_count,
                        "state": final,
                        "format": result.format,
                        "erased_rows": erased,
                        "proposed_tags": [
                            [p.column, p.tag, p.detector, p.score] for p in result.proposals
                        ],
                    },
                    actor,
                ),
                (
                    "dataset.quality",
                    {
                        "dataset": info.name,
                        "version": info.version,
                        "suite_inferred": result.suite_inferred,
                        **result.report.summary(),
                    },
                    actor,
                ),
            ]
        )
        return replace(result, info=self.catalog.set_state(info.name, info.version, final))

    def accept_version(self, name: str, version: int, actor: str) -> DatasetInfo:
        """A steward serves a version that failed its suite; logged before it takes effect."""
        info = self.catalog.get(name, version)
        if info.state != "quarantined":
            raise Conflict(
                f"version {version} of {name!r} is {info.state}; only quarantined versions "
                "are accepted",
                details={"dataset": name, "version": version, "state": info.state},
            )
        self.log("dataset.accept", {"dataset": name, "version": version}, actor)
        self.quality.mark_accepted(info.version_id, actor)
        return self.catalog.set_state(name, version, "active")

    def put_suite(self, name: str, suite: Mapping[str, Any], actor: str) -> SuiteInfo:
        """Replace a dataset's quality suite (applies from its next version); logged."""
        info = self.quality.put_suite(name, suite, actor)
        self.log(
            "dataset.suite",
            {"dataset": name, "expectations": len(info.suite["expectations"])},
            actor,
        )
        return info

    def set_tags(self, name: str, column: str, tags: Sequence[str], actor: str) -> DatasetInfo:
        """A steward confirms or edits a column's tags; logged."""
        info = self.catalog.set_tags(name, column, tags)
        self.log("dataset.tags", {"dataset": name, "column": column, "tags": list(tags)}, actor)
        return info

    def read(self, caller: Caller, req: ReadRequest) -> GovernedRead:
        """Decide (logged), check, log the read, and return its stream, which records the
        row ids it delivers to the run. See ``govern.provenance.reads``."""
        return open_read(self, caller, req)

    def log(self, kind: str, data: Mapping[str, Any], actor: str) -> int:
        """Record an event in the access log; returns its index once durable."""
        return self.ledger.append(kind, data, actor)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self._jobs is not None:
            self._jobs.close()
        if self.anchorer is not None:
            self.anchorer.stop()
        if self._ledger is not None:
            self._ledger.close()
        if self.watcher is not None:
            self.watcher.close()
        self.engine.close()
        self.db.dispose()

    # -- decisions -----------------------------------------------------------------------------

    def decide(self, caller: Caller, req: DecisionRequest) -> Plan:
        """Decide and log: the Plan leaves only once its log entry is durable (invariant 2)."""
        return self.decide_many(caller, [req])[0]

    def decide_many(self, caller: Caller, reqs: Sequence[DecisionRequest]) -> list[Plan]:
        plans = [self._decide(caller, r) for r in reqs]
        first = self.ledger.append_many([("decision", p.to_log(), caller.id) for p in plans])
        return [p.with_log_index(first + i) for i, p in enumerate(plans)]

    def _decide(self, caller: Caller, req: DecisionRequest) -> Plan:
        """Resolve the subject from the store, decide, and return the Plan.

        Attributes always come from the subject's stored record: ones sent with the request are
        ignored (and the Plan says so), so no caller can raise a clearance by asserting it.
        """
        subject_id = req.subject_id or caller.id
        if subject_id != caller.id and not is_allowed(caller.role, Action.DECIDE_ANY):
            raise Forbidden(
                f"role {caller.role!r} may only ask decisions about itself",
                details={"subject": subject_id[:200]},
            )

        def deny(reason: str, version: int | None = None) -> Plan:
            return Plan.deny(
                dataset=req.dataset[:200],
                purpose=req.purpose[:100],
                subject_id=subject_id[:200],
                reason=reason,
                policy_version=self.policy.current.version,
                version=version,
            )

        try:
            principal = (
                caller.principal if subject_id == caller.id else self.principals.get(subject_id)
            )
        except PrincipalNotFound:
            return deny("unknown subject")
        if principal.disabled:
            return deny("subject is disabled")
        role = req.role or (caller.role if subject_id == caller.id else principal.roles[0])
        if role not in principal.roles or (subject_id == caller.id and role != caller.role):
            return deny(f"subject does not act as role {role[:32]!r}")
        try:
            info = self.catalog.get(req.dataset, req.version)
        except GovernError as exc:
            return deny(exc.message)
        if info.state in ("pending", "quarantined"):
            # A pinned version that failed its quality suite (or is mid-ingestion) is not served.
            return deny(f"version {info.version} of {info.name!r} is {info.state}", info.version)
        subject = {**principal.attributes, "id": principal.id, "role": role}
        plan = self.policy.decide(
            subject=subject,
            dataset=info,
            action=req.action,
            purpose=req.purpose,
            columns=req.columns,
        )
        if req.sent_attributes and any(
            principal.attributes.get(k) != v for k, v in req.sent_attributes.items()
        ):
            plan = Plan(
                **{
                    **plan.__dict__,
                    "reasons": (
                        *plan.reasons,
                        "attributes sent with the request were ignored; the stored ones apply",
                    ),
                }
            )
        return self._with_compliance(plan)

    @property
    def compliance(self) -> ComplianceService:
        """Legal rules, assessments, reviews, and the verdicts in force (govern.compliance)."""
        with self._ledger_lock:
            if self._compliance is None:
                self._compliance = open_compliance(self.settings, self.db, self.catalog, self.log)
            return self._compliance

    def _with_compliance(self, plan: Plan) -> Plan:
        """An open non_compliant verdict for the dataset and purpose denies; an open
        needs_review adds an obligation. Read from a cached table; a failure denies."""
        try:
            verdicts = self.compliance.open_verdicts(plan.dataset, plan.purpose)
        except GovernError as exc:
            return plan.overruled([f"compliance verdicts unavailable: {exc.message}"])
        except SQLAlchemyError:
            # Not only a lost connection (StoreUnavailable): any failure to read them denies.
            return plan.overruled(["compliance verdicts unavailable: the store could not be read"])
        if not verdicts:
            return plan
        bad = [v for v in verdicts if v.verdict == "non_compliant"]
        if bad and plan.allowed:
            return plan.overruled(
                [
                    f"compliance: {v.rule} is non_compliant (assessment {v.assessment_id}): "
                    f"{v.reason}"
                    for v in bad
                ]
            )
        reviews = tuple(
            f"compliance review: {v.rule} ({v.review_id or v.assessment_id})"
            for v in verdicts
            if v.verdict == "needs_review"
        )
        return replace(plan, obligations=(*plan.obligations, *reviews))
