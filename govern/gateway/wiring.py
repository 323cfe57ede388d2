"""The Gateway: wires the parts once per process and hands the edges four things.

- ``decider``: who is calling, and Plans (``govern.gateway.decider``);
- ``reads``: the governed read path (``govern.gateway.reads``);
- ``commands``: every change, each with its event (``govern.gateway.commands``);
- ``queries``: every view the edges show (``govern.gateway.queries``).

The parts themselves are private: built once in ``open``, shared by those four, reached by
nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from govern.auth import Caller, PrincipalRecord, PrincipalService, TokenService
from govern.catalog import Catalog
from govern.catalog.scratch import sweep_folders
from govern.compliance import open_compliance
from govern.engine import Engine
from govern.errors import ConfigError
from govern.events.commitment import Commitments
from govern.gateway.commands import Commands, Parts
from govern.gateway.decider import Decider
from govern.gateway.queries import Queries
from govern.gateway.reads import Reads
from govern.jobs import JobManager, Worker
from govern.ledger.anchor import Anchorer, AnchorRecord, AnchorRecords, open_chain
from govern.ledger.service import Ledger
from govern.policy.service import PolicyService
from govern.policy.watcher import StoreWatcher
from govern.provenance.store import ProvenanceStore
from govern.quality import QualityStore
from govern.settings import Settings
from govern.store import Database
from govern.unlearning import ErasureService
from govern.unlearning.recipes import RecipeStore
from govern.unlearning.rewrite import Rewriter
from govern.unlearning.strategies import UnlearningPlanner

__all__ = ["Gateway"]


@dataclass
class Gateway:
    settings: Settings
    decider: Decider
    reads: Reads
    commands: Commands
    queries: Queries
    _parts: Parts = field(repr=False)
    _engine: Engine = field(repr=False)
    _rewriter: Rewriter = field(repr=False)
    _anchorer: Anchorer | None = field(default=None, repr=False)
    _workers: list[Worker] = field(default_factory=list, repr=False)

    @classmethod
    def open(
        cls, settings: Settings, *, watch: bool = False, anchor: bool | None = None
    ) -> Gateway:
        """``watch``: serve (follow policy changes from replicas, run the job reconciler and
        the rewrite). ``anchor`` (default: as ``watch``): run the anchorer that writes
        checkpoints to the configured chain."""
        settings.home.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url, guarded=True)
        ledger = Ledger(db, settings.keys_dir / "ledger.pem", settings.ledger_origin)
        commitments = Commitments(settings.commitment_key_bytes)
        catalog = Catalog(db, settings.datasets_dir)
        principals = PrincipalService(db)
        tokens = TokenService(db, settings.token_secret, settings.token_ttl_seconds)
        policy = PolicyService(db)
        engine = Engine(mask_dir=settings.masks_dir)
        provenance = ProvenanceStore(db)
        erasure = ErasureService(db, catalog, commitments)
        recipes = RecipeStore(db, provenance)
        planner = UnlearningPlanner(
            erasure,
            provenance,
            recipes,
            mode=settings.unlearning_strategy,
            workdir=settings.unlearning_workdir,
        )
        compliance = open_compliance(settings, db, catalog)
        watcher = None
        if watch and settings.policy_watcher != "none":
            watcher = StoreWatcher(settings.resolved_database_url, settings.policy_poll_seconds)
            watcher.set_update_callback(policy.reload)
        parts = Parts(
            settings=settings,
            db=db,
            ledger=ledger,
            commitments=commitments,
            catalog=catalog,
            principals=principals,
            tokens=tokens,
            policy=policy,
            watcher=watcher,
            quality=QualityStore(db),
            erasure=erasure,
            jobs=JobManager(db, settings, tokens),
            provenance=provenance,
            recipes=recipes,
            planner=planner,
            compliance=compliance,
            anchors=AnchorRecords(db),
        )
        commands = Commands(parts)
        # The background workers change state through the command layer, handed to them here
        # (they sit below it and cannot import it).
        parts.jobs.bind(commands)
        rewriter = Rewriter(
            db,
            record=commands.record_rewrite,
            rewritten=engine.masks.discard if engine.masks is not None else None,
        )
        decider = Decider(
            tokens=tokens,
            principals=principals,
            catalog=catalog,
            policy=policy,
            compliance=compliance,
            ledger=ledger,
        )
        anchorer = None
        if (watch if anchor is None else anchor) and settings.chain_backend != "none":
            anchorer = Anchorer(
                lambda: ledger,
                lambda: open_chain(settings),
                parts.anchors,
                record=commands.record_anchor,
                every_entries=settings.anchor_every_entries,
                every_seconds=settings.anchor_every_seconds,
            )
        gateway = cls(
            settings=settings,
            decider=decider,
            reads=Reads(
                decider=decider,
                catalog=catalog,
                engine=engine,
                provenance=provenance,
                erasure=erasure,
                ledger=ledger,
                flush_seconds=settings.provenance_flush_seconds,
            ),
            commands=commands,
            queries=Queries(
                db=db,
                catalog=catalog,
                quality=parts.quality,
                principals=principals,
                policy=policy,
                engine=engine,
                ledger=ledger,
                anchors=parts.anchors,
                anchorer=anchorer,
                erasure=erasure,
                jobs=parts.jobs,
                rewriter=rewriter,
                provenance=provenance,
                recipes=recipes,
                compliance=compliance,
                commitments=commitments,
                planner=planner,
            ),
            _parts=parts,
            _engine=engine,
            _rewriter=rewriter,
            _anchorer=anchorer,
        )
        if anchorer is not None:
            anchorer.start()
        if watch:
            # What a killed process left half-written goes before this one serves.
            catalog.sweep()
            sweep_folders(settings.uploads_dir)
            if engine.masks is not None:
                engine.masks.sweep()
            gateway._start_workers()
        # A bad rule file is a start-up error naming the file (the model loads on first use).
        compliance.start(load_model=False)
        return gateway

    def _start_workers(self) -> None:
        """The job reconciler (it first resumes every job an earlier process left unfinished)
        and, unless disabled, the background rewrite of erased rows."""
        poll = self.settings.jobs_poll_seconds
        if self.settings.jobs_backend != "none":
            reconciler = Worker("govern-jobs", self._parts.jobs.tick, poll)
            self._parts.jobs.wake = reconciler.wake
            self._workers.append(reconciler)
        if self.settings.erasure_rewrite:
            self._workers.append(Worker("govern-rewrite", self._rewriter.tick, poll))
        for worker in self._workers:
            worker.start()

    @property
    def operator(self) -> Caller:
        """The local operator: whoever runs the ``govern`` CLI on this host holds the store
        and its keys, so acts as an admin, named ``settings.cli_actor`` in the log."""
        principal = PrincipalRecord(id=self.settings.cli_actor, roles=("admin",))
        return Caller(principal=principal, role="admin", token_id="")  # no token: local

    def run_jobs_once(self) -> None:
        """One pass of the job reconciler on this thread (what a serving gateway's worker does
        every ``jobs_poll_seconds``)."""
        self._parts.jobs.tick()

    def rewrite_once(self) -> list[int]:
        """One pass of the background rewrite on this thread; the ids of the versions it
        rewrote (or failed to)."""
        return self._rewriter.tick()

    def prepare_model(self, progress: Callable[[str], None] | None = None) -> bool:
        """The language model's one-off work ahead of serving, in this process (``govern model
        prepare``: the local model's GGUF converted under GOVERN_HOME); True when there was
        some. Not an event: it writes a cache derived from an installed file, not state."""
        holder = self._parts.compliance.models
        return holder.prepare(progress) if holder is not None else False

    def wake_anchorer(self) -> None:
        """Have a running anchorer check for work now instead of at its next poll."""
        if self._anchorer is not None:
            self._anchorer.wake()

    def anchor_now(self, actor: str | None = None) -> AnchorRecord | None:
        """One anchoring attempt now (raises when it fails; None when everything is anchored),
        logged as ``actor`` (default: the anchorer); the gateway must have been opened with
        ``anchor=True``."""
        if self._anchorer is None:
            raise ConfigError("this gateway was opened without an anchorer")
        if actor is None:
            return self._anchorer.anchor_now()
        commands = self.commands
        return self._anchorer.anchor_now(lambda r: commands.record_anchor(r, actor))

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
        self._parts.jobs.close()
        if self._anchorer is not None:
            self._anchorer.stop()
        self._parts.ledger.close()
        if self._parts.watcher is not None:
            self._parts.watcher.close()
        self._engine.close()
        self._parts.db.dispose()
