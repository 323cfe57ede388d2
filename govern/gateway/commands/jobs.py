"""Retrain and unlearn jobs: an admin's retry and cancel, and the changes the job reconciler
makes as it submits and follows jobs (``govern.jobs.JobChanges``)."""

from __future__ import annotations

from typing import Any

from govern.errors import Conflict
from govern.events import (
    JobAttemptStarted,
    JobCancelled,
    JobEnded,
    JobRetried,
    JobStateChanged,
    JobSubmitted,
    TokenIssued,
    TokenRevoked,
)
from govern.gateway.commands.base import CommandBase
from govern.jobs import JobInfo
from govern.ledger.service import Tx

__all__ = ["JOBS_ACTOR", "JobCommands"]

# The actor of the reconciler's own changes.
JOBS_ACTOR = "govern-jobs"


class JobCommands(CommandBase):
    def retry_job(self, job_id: str, actor: str) -> JobInfo:
        """Give a failed or cancelled job a fresh set of attempts (admin)."""

        def change(tx: Tx) -> None:
            previous = self._p.jobs.reset_for_retry(job_id, actor)
            tx.emit(JobRetried(id=job_id, was=previous))
            tx.after_commit(self._p.jobs.wake_up)

        self._transact(actor, change)
        return self._p.jobs.get(job_id)

    def cancel_job(self, job_id: str, actor: str) -> JobInfo:
        """Stop a job that has not ended (admin): the backend is told first, then the job is
        recorded as cancelled."""
        job = self._p.jobs.get(job_id)
        if job.terminal:
            raise Conflict(f"job {job_id} has already ended ({job.state})")
        self._p.jobs.cancel_on_backend(job)

        def change(tx: Tx) -> None:
            if not self._end(tx, job, "cancelled", f"cancelled by {actor}", expect=job.state):
                raise Conflict(f"job {job_id} changed meanwhile; look again")
            tx.emit(JobCancelled(id=job_id, was=job.state))

        self._transact(actor, change)
        return self._p.jobs.get(job_id)

    # -- the reconciler's changes ----------------------------------------------------------------

    def begin_attempt(self, job: JobInfo, external_id: str, backend: str) -> tuple[str, str] | None:
        """Record the attempt id before the submit (compare-and-set, so replicas agree on one)
        and mint the attempt's trainer token: (attempt id, token), or None when the job has
        moved on meanwhile."""

        def change(tx: Tx) -> tuple[str, str] | None:
            claimed = self._p.jobs.claim_attempt(job, external_id, backend)
            if claimed is None:
                tx.no_change()
                return None
            issued = self._p.jobs.mint_token(job.principal_id)
            self._p.jobs.set_token(job.id, issued.jti)
            tx.emit(
                TokenIssued(
                    jti=issued.jti,
                    subject=job.principal_id,
                    role="trainer",
                    expires_at=issued.expires_at.isoformat(),
                )
            )
            tx.emit(
                JobAttemptStarted(
                    id=job.id,
                    attempt=job.attempts + 1,
                    external_id=claimed,
                    backend=backend,
                    token=issued.jti,
                )
            )
            return claimed, issued.token

        return self._transact(JOBS_ACTOR, change).value

    def job_submitted(self, job: JobInfo, attempt: int, external_id: str, backend: str) -> bool:
        def change(tx: Tx) -> bool:
            if not self._p.jobs.mark_submitted(job, attempt, external_id, backend):
                tx.no_change()
                return False
            tx.emit(
                JobSubmitted(
                    id=job.id,
                    backend=backend,
                    external_id=external_id,
                    attempt=attempt,
                    run_id=job.run_id,
                    principal=job.principal_id,
                )
            )
            return True

        return self._transact(JOBS_ACTOR, change).value

    def update_job(
        self,
        job: JobInfo,
        *,
        revoke_token: bool = False,
        expect: str | None = None,
        **values: Any,
    ) -> bool:
        """Move a job that has not ended (state, message, next attempt), if it is still in the
        state it was read in; ``revoke_token`` ends its attempt's token."""

        def change(tx: Tx) -> bool:
            if not self._p.jobs.set(job, expect=expect, **values):
                tx.no_change()
                return False
            if revoke_token:
                self._revoke_attempt_token(tx, job.id)
            state = str(values.get("state", job.state))
            tx.emit(
                JobStateChanged(
                    id=job.id,
                    state=state,
                    previous=job.state,
                    attempts=int(values.get("attempts", job.attempts)),
                )
            )
            return True

        return self._transact(JOBS_ACTOR, change).value

    def end_job(
        self,
        job: JobInfo,
        state: str,
        message: str,
        *,
        attempts: int | None = None,
        expect: str | None = None,
    ) -> bool:
        """A job ended (succeeded, failed or cancelled): its token is revoked, and its erasure
        request completes when this was its last job."""

        def change(tx: Tx) -> bool:
            if not self._end(tx, job, state, message, attempts=attempts, expect=expect):
                tx.no_change()
                return False
            return True

        return self._transact(JOBS_ACTOR, change).value

    def _end(
        self,
        tx: Tx,
        job: JobInfo,
        state: str,
        message: str,
        *,
        attempts: int | None = None,
        expect: str | None = None,
    ) -> bool:
        if not self._p.jobs.finish(job, state, message, attempts=attempts, expect=expect):
            return False
        self._revoke_attempt_token(tx, job.id)
        tx.emit(
            JobEnded(
                id=job.id,
                state=state,
                run_id=job.run_id,
                attempts=attempts if attempts is not None else job.attempts,
            )
        )
        if job.request_id is not None:
            self._complete_if_done(tx, job.request_id)
        return True

    def _revoke_attempt_token(self, tx: Tx, job_id: str) -> None:
        jti = self._p.jobs.token_of(job_id)
        if jti is not None and self._p.tokens.revoke_if_live(jti):
            tx.emit(TokenRevoked(jti=jti, subject=self._p.tokens.subject_of(jti)))
