"""Signed, expiring, revocable bearer tokens (JWT, HS256).

A token names a principal and one of its roles. Verification checks, in order:
1. the signature and the issuer, 2. expiry, 3. that the token was issued by this store and not
revoked, 4. that the principal still exists, is enabled and still holds the role.
Any failure is an AuthError (401); nothing about a bad token is trusted.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import select

from govern.auth.principals import Caller, PrincipalService, record_of, validate_principal_id
from govern.errors import AuthError, NotFound, PrincipalNotFound, ValidationError
from govern.store.db import Database
from govern.store.models import Principal, Token
from govern.store.stamp import StampedCache

__all__ = ["IssuedToken", "TokenService"]

_ISSUER = "govern"
_ALGORITHM = "HS256"


@dataclass(frozen=True)
class IssuedToken:
    token: str  # the bearer token itself: shown once, never stored
    jti: str
    subject: str
    role: str
    expires_at: datetime


class TokenService:
    def __init__(self, db: Database, secret: bytes, ttl_seconds: int) -> None:
        self.db = db
        self._secret = secret
        self.ttl = timedelta(seconds=ttl_seconds)
        self.principals = PrincipalService(db)
        # Steps 3 and 4 read the store; their answer holds until the next change of state.
        self._checked: StampedCache[str, Caller] = StampedCache(db)

    def issue(self, subject: str, role: str, ttl_seconds: int | None = None) -> IssuedToken:
        validate_principal_id(subject)
        now = datetime.now(UTC)
        expires = now + (timedelta(seconds=ttl_seconds) if ttl_seconds else self.ttl)
        jti = secrets.token_hex(16)
        with self.db.session() as s:
            principal = s.get(Principal, subject)
            if principal is None:
                raise PrincipalNotFound(
                    f"no principal {subject!r}; create it first", details={"id": subject}
                )
            if role not in principal.roles:
                raise ValidationError(
                    f"principal {subject!r} does not hold role {role!r}",
                    details={"roles": list(principal.roles)},
                )
            s.add(
                Token(jti=jti, principal_id=subject, role=role, issued_at=now, expires_at=expires)
            )
        claims = {
            "iss": _ISSUER,
            "sub": subject,
            "role": role,
            "jti": jti,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
        }
        token = jwt.encode(claims, self._secret, algorithm=_ALGORITHM)
        return IssuedToken(token, jti, subject, role, expires)

    def revoke(self, jti: str) -> str:
        """Revoke a token; returns its principal's id."""
        with self.db.session() as s:
            row = s.get(Token, jti)
            if row is None:
                raise NotFound("no such token", details={"jti": jti[:64]})
            row.revoked_at = datetime.now(UTC)
            return row.principal_id

    def revoke_if_live(self, jti: str) -> bool:
        """Revoke a token that exists and is not revoked yet; True if it was."""
        with self.db.session() as s:
            row = s.get(Token, jti)
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = datetime.now(UTC)
            return True

    def subject_of(self, jti: str) -> str:
        with self.db.session() as s:
            row = s.get(Token, jti)
            if row is None:
                raise NotFound("no such token", details={"jti": jti[:64]})
            return row.principal_id

    def revoke_all(self, subject: str) -> list[str]:
        """Revoke every live token of a principal; returns their ids."""
        now = datetime.now(UTC)
        with self.db.session() as s:
            rows = s.scalars(
                select(Token).where(Token.principal_id == subject, Token.revoked_at.is_(None))
            ).all()
            for row in rows:
                row.revoked_at = now
            return [row.jti for row in rows]

    def verify(self, token: str) -> Caller:
        # 1-2. signature, issuer, expiry (PyJWT checks exp when present; we require it).
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                issuer=_ISSUER,
                options={"require": ["exp", "iat", "sub", "jti", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired", details={"reason": "expired"}) from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError("invalid token", details={"reason": "invalid"}) from exc
        return self._checked.get(token, lambda: self._check_store(claims))

    def _check_store(self, claims: dict[str, Any]) -> Caller:
        """Steps 3 and 4 of the module docstring."""
        with self.db.session() as s:
            # 3. issued here and not revoked.
            row = s.get(Token, str(claims["jti"]))
            if row is None or row.revoked_at is not None:
                raise AuthError("token revoked or unknown", details={"reason": "revoked"})
            if row.principal_id != claims["sub"] or row.role != claims.get("role"):
                raise AuthError("invalid token", details={"reason": "invalid"})
            # 4. the principal still exists, is enabled and holds the role.
            stored = s.get(Principal, row.principal_id)
            if stored is None:
                raise AuthError("principal no longer exists", details={"reason": "revoked"})
            principal = record_of(stored)
        if principal.disabled or row.role not in principal.roles:
            raise AuthError("principal disabled or role withdrawn", details={"reason": "revoked"})
        return Caller(principal=principal, role=row.role, token_id=row.jti)
