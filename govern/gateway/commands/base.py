"""What every command shares: the parts it changes and the one way it changes them.

A command checks what it can before it starts, then makes its change and emits its typed event
inside ``Ledger.transact``: the change and its event commit together or not at all (invariant
7). Work that must wait for the commit (swapping a policy into memory, waking a worker) goes to
``Tx.after_commit``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from govern.auth import PrincipalService, TokenService
from govern.catalog import Catalog
from govern.compliance import ComplianceService
from govern.events import ErasureCompleted
from govern.events.commitment import Commitments
from govern.jobs import JobManager
from govern.ledger.anchor import AnchorRecords
from govern.ledger.service import Committed, Ledger, Tx
from govern.policy.service import PolicyService
from govern.policy.watcher import StoreWatcher
from govern.provenance.store import ProvenanceStore
from govern.quality import QualityStore
from govern.settings import Settings
from govern.store import Database
from govern.unlearning import ErasureService
from govern.unlearning.recipes import RecipeStore
from govern.unlearning.strategies import UnlearningPlanner

__all__ = ["CommandBase", "Parts"]

T = TypeVar("T")


@dataclass(frozen=True)
class Parts:
    """The parts the commands change, built once by ``Gateway.open``."""

    settings: Settings
    db: Database
    ledger: Ledger
    commitments: Commitments
    catalog: Catalog
    principals: PrincipalService
    tokens: TokenService
    policy: PolicyService
    watcher: StoreWatcher | None
    quality: QualityStore
    erasure: ErasureService
    jobs: JobManager
    provenance: ProvenanceStore
    recipes: RecipeStore
    planner: UnlearningPlanner
    compliance: ComplianceService
    anchors: AnchorRecords


class CommandBase:
    def __init__(self, parts: Parts) -> None:
        self._p = parts

    def _transact(self, actor: str, change: Callable[[Tx], T]) -> Committed[T]:
        return self._p.ledger.transact(actor, change)

    def _complete_if_done(self, tx: Tx, request_id: str) -> None:
        """Once an erasure request has completed, remove its subject id in clear from the
        store (the commitment stays) and log that it completed."""
        done = self._p.erasure.scrub_if_completed(request_id)
        if done is not None:
            tx.emit(
                ErasureCompleted(
                    id=done.id, subject_commitment=done.subject_commitment, jobs=done.jobs
                )
            )
