"""Wires the parts together once per process. REST, Flight and the CLI all hold one Gateway,
and ask it for decisions, so there is one path from a request to a Plan."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from govern.auth import Action, Caller, PrincipalService, TokenService, is_allowed
from govern.catalog import Catalog, DatasetInfo
from govern.engine import Engine
from govern.errors import Forbidden, GovernError, PrincipalNotFound
from govern.ledger.anchor import Anchorer, AnchorRecords, open_chain
from govern.ledger.service import Ledger
from govern.policy.plan import Plan
from govern.policy.service import PolicyService
from govern.policy.watcher import StoreWatcher
from govern.provenance.reads import GovernedRead, ReadRequest, open_read
from govern.provenance.store import ProvenanceStore
from govern.settings import Settings
from govern.store import Database
from govern.unlearning import ErasureInfo, ErasureService

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
        return gateway

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
        return ErasureService(self.db, self.catalog, self.provenance)

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
        return info

    def read(self, caller: Caller, req: ReadRequest) -> GovernedRead:
        """Decide (logged), check, log the read, and return its stream, which records the
        row ids it delivers to the run. See ``govern.provenance.reads``."""
        return open_read(self, caller, req)

    def log(self, kind: str, data: Mapping[str, Any], actor: str) -> int:
        """Record an event in the access log; returns its index once durable."""
        return self.ledger.append(kind, data, actor)

    def close(self) -> None:
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
        return plan
