"""Who is calling: principals, roles, bearer tokens. Attributes always come from the store."""

from __future__ import annotations

from govern.auth.principals import Caller, PrincipalRecord, PrincipalService
from govern.auth.roles import ROLES, Action, ensure_allowed, is_allowed
from govern.auth.tokens import IssuedToken, TokenService

__all__ = [
    "ROLES",
    "Action",
    "Caller",
    "IssuedToken",
    "PrincipalRecord",
    "PrincipalService",
    "TokenService",
    "ensure_allowed",
    "is_allowed",
]
