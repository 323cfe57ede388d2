"""Who may do what: principals, their tokens, and the policy set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from govern.auth import PrincipalRecord
from govern.auth.tokens import IssuedToken
from govern.errors import PrincipalNotFound
from govern.events import (
    PolicyPut,
    PrincipalDisabled,
    PrincipalPut,
    TokenIssued,
    TokenRevoked,
    TokensRevoked,
)
from govern.gateway.commands.base import CommandBase
from govern.ledger.service import Tx

__all__ = ["AccessCommands"]


class AccessCommands(CommandBase):
    def put_principal(
        self,
        pid: str,
        roles: Sequence[str],
        attributes: Mapping[str, Any] | None,
        actor: str,
        *,
        display_name: str = "",
    ) -> PrincipalRecord:
        """Create or replace a principal (roles and the attributes policies match on)."""

        def change(tx: Tx) -> PrincipalRecord:
            try:
                self._p.principals.get(pid)
                created = False
            except PrincipalNotFound:
                created = True
            record = self._p.principals.upsert(
                pid, list(roles), attributes, display_name=display_name
            )
            tx.emit(
                PrincipalPut(
                    id=record.id,
                    roles=record.roles,
                    attributes=dict(record.attributes),
                    created=created,
                )
            )
            return record

        return self._transact(actor, change).value

    def disable_principal(self, pid: str, actor: str) -> None:
        """Disable a principal: every token it holds stops working at once."""

        def change(tx: Tx) -> None:
            self._p.principals.disable(pid)
            tx.emit(PrincipalDisabled(id=pid))

        self._transact(actor, change)

    def issue_token(
        self, subject: str, role: str, actor: str, ttl_seconds: int | None = None
    ) -> IssuedToken:
        def change(tx: Tx) -> IssuedToken:
            issued = self._p.tokens.issue(subject, role, ttl_seconds)
            tx.emit(
                TokenIssued(
                    jti=issued.jti,
                    subject=subject,
                    role=role,
                    expires_at=issued.expires_at.isoformat(),
                )
            )
            return issued

        return self._transact(actor, change).value

    def revoke_token(self, jti: str, actor: str) -> None:
        def change(tx: Tx) -> None:
            subject = self._p.tokens.revoke(jti)
            tx.emit(TokenRevoked(jti=jti, subject=subject))

        self._transact(actor, change)

    def revoke_tokens_of(self, subject: str, actor: str) -> int:
        """Revoke every live token of a principal; returns how many."""

        def change(tx: Tx) -> int:
            jtis = self._p.tokens.revoke_all(subject)
            tx.emit(TokensRevoked(subject=subject, jtis=tuple(jtis)))
            return len(jtis)

        return self._transact(actor, change).value

    def put_policy(self, model: str | None, rules: Sequence[Sequence[Any]], actor: str) -> int:
        """Validate the whole set aside, store it with its event, and only then swap it in and
        tell the replicas. An invalid set is a 422 and the old set keeps serving."""
        policy = self._p.policy
        candidate = policy.prepare(model, rules)

        def change(tx: Tx) -> int:
            version = policy.save(candidate, actor)
            stored = policy.store.get(version)
            assert stored is not None
            tx.emit(
                PolicyPut(
                    version=version,
                    sha256=stored.sha256,
                    rules=len(candidate.rules),
                    model_changed=model is not None
                    and candidate.model_text != policy.current.model_text,
                )
            )
            tx.after_commit(lambda: self._swap_in(candidate, version))
            return version

        return self._transact(actor, change).value

    def _swap_in(self, candidate: Any, version: int) -> None:
        self._p.policy.swap_in(candidate, version)
        if self._p.watcher is not None:
            self._p.watcher.update()
