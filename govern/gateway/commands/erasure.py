"""Erasure: withdraw a data subject's rows, start the jobs that make models forget, and the
background rewrite of the data files."""

from __future__ import annotations

from collections.abc import Sequence

from govern.errors import Conflict
from govern.events import (
    DataRewritten,
    ErasureKeyed,
    ErasureRequested,
    JobsEnqueued,
    RewriteFailed,
)
from govern.gateway.commands.base import CommandBase
from govern.jobs import JobSpec
from govern.ledger.service import Tx
from govern.unlearning import ErasureInfo
from govern.unlearning.rewrite import RewriteOutcome, store_outcome

__all__ = ["ErasureCommands"]


class ErasureCommands(CommandBase):
    def request_erasure(
        self, subject_id: str, datasets: Sequence[str] | None, legal_basis: str, actor: str
    ) -> ErasureInfo:
        """Withdraw the subject's rows from every version of the named datasets (all by
        default), effective when this returns (invariant 5), and enqueue the jobs that make
        the runs that read them forget.

        The log holds the subject only as a keyed commitment (invariant 8). A request that
        finds no rows completes at once and keeps no cleartext. The same subject and scope
        again is the same request: nothing new happens, and nothing is logged again."""
        p = self._p
        commitment = p.commitments.subject(subject_id)

        def change(tx: Tx) -> ErasureInfo:
            existing = p.erasure.find(commitment, datasets)
            if existing is not None:
                tx.no_change()
                return existing
            info = p.erasure.request(subject_id, commitment, datasets, legal_basis, actor)
            tx.emit(
                ErasureRequested(
                    id=info.id,
                    subject_commitment=commitment,
                    datasets=info.datasets,
                    legal_basis=legal_basis,
                    excluded_rows=info.excluded_rows,
                    versions=info.versions,
                )
            )
            if info.excluded_rows:
                # The rows are withheld from here on; now the jobs that make the models that
                # read them forget. Planning is deterministic and enqueueing idempotent.
                _, plan = p.planner.plan(info.id)
                self._enqueue_jobs(tx, info.id, plan.specs)
            else:
                self._complete_if_done(tx, info.id)
            return p.erasure.get(info.id)

        committed = self._transact(actor, change)
        info = committed.value
        if committed.count:
            return ErasureInfo(**{**info.__dict__, "created": True})
        return info

    def key_erasure_requests(self, actor: str) -> int:
        """Give every request made before commitments existed its subject's commitment, and
        remove the cleartext of those that have completed (run on upgrade). Returns how many
        it keyed."""
        p = self._p

        def change(tx: Tx) -> int:
            todo = p.erasure.unkeyed()
            if not todo:
                tx.no_change()
                return 0
            for rid, subject in todo:
                commitment = p.commitments.subject(subject)
                p.erasure.set_commitment(rid, commitment)
                tx.emit(ErasureKeyed(id=rid, subject_commitment=commitment))
                self._complete_if_done(tx, rid)
            return len(todo)

        return self._transact(actor, change).value

    def record_rewrite(self, outcome: RewriteOutcome) -> None:
        """The background rewrite removed a version's erased rows from its file (or failed)."""

        def change(tx: Tx) -> None:
            store_outcome(self._p.db, outcome)
            if outcome.error is None:
                tx.emit(
                    DataRewritten(
                        dataset=outcome.dataset,
                        version=outcome.version,
                        requests=tuple(outcome.requests),
                        rows_before=outcome.rows_before,
                        rows_after=outcome.rows_after,
                        sha256_before=outcome.sha256_before,
                        sha256_after=outcome.sha256_after,
                    )
                )
            else:
                tx.emit(
                    RewriteFailed(
                        dataset=outcome.dataset,
                        version=outcome.version,
                        requests=tuple(outcome.requests),
                        error=outcome.error,
                    )
                )

        self._transact("govern-rewrite", change)

    def enqueue_jobs(self, request_id: str, specs: Sequence[JobSpec], actor: str) -> list[str]:
        """Add retrain or unlearn jobs to an erasure request (idempotent: a job already there
        is not added again); returns the ids of the new ones. The erasure request itself
        enqueues the jobs its plan needs; this is for Python callers that plan their own (no
        edge offers it, since a job's command runs on the fleet)."""

        def change(tx: Tx) -> list[str]:
            info = self._p.erasure.get(request_id)
            if info.completed:
                # Its completion is logged and its cleartext gone: a new job would run after
                # the log said the request was done.
                raise Conflict(
                    f"erasure request {request_id} has completed; it takes no new job",
                    details={"id": request_id, "state": info.state},
                )
            created = self._enqueue_jobs(tx, request_id, specs)
            if not tx.events:
                tx.no_change()
            return created

        return self._transact(actor, change).value

    def _enqueue_jobs(self, tx: Tx, request_id: str, specs: Sequence[JobSpec]) -> list[str]:
        """Enqueue the jobs not there yet; the request is planned from now on (completed at
        once when it needs no job)."""
        created, planned = self._p.jobs.enqueue(request_id, specs)
        if created or planned:
            tx.emit(
                JobsEnqueued(
                    request=request_id, jobs=tuple(created), backend=self._p.jobs.backend_name
                )
            )
            self._complete_if_done(tx, request_id)
        if created:
            tx.after_commit(self._p.jobs.wake_up)
        return created
