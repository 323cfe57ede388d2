"""Principals (people and services) and their stored roles and attributes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from govern.auth.roles import ROLES
from govern.errors import BadRequest, PrincipalNotFound, ValidationError
from govern.store.db import Database
from govern.store.models import Principal

__all__ = ["Caller", "PrincipalRecord", "PrincipalService"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,199}$")
# Attribute names become r.sub.<name> in Casbin matchers, so they must be identifiers, and may
# not shadow the two fields govern sets itself.
_ATTR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_RESERVED_ATTRS = frozenset({"id", "role"})
AttrValue = str | int | float | bool


@dataclass(frozen=True)
class PrincipalRecord:
    id: str
    roles: tuple[str, ...]
    attributes: Mapping[str, AttrValue] = field(default_factory=dict)
    display_name: str = ""
    disabled: bool = False


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: the principal and the one role its token carries."""

    principal: PrincipalRecord
    role: str
    token_id: str

    @property
    def id(self) -> str:
        return self.principal.id


def validate_principal_id(pid: str) -> str:
    if not _ID.fullmatch(pid):
        raise BadRequest(
            "principal ids are 1-200 characters of letters, digits and ._@- ",
            details={"id": pid[:200]},
        )
    return pid


def validate_attributes(attrs: Mapping[str, Any]) -> dict[str, AttrValue]:
    out: dict[str, AttrValue] = {}
    for name, value in attrs.items():
        if not _ATTR.fullmatch(name) or name in _RESERVED_ATTRS:
            raise ValidationError(
                f"attribute name {name[:64]!r} must be an identifier other than id and role",
                details={"attribute": name[:64]},
            )
        if not isinstance(value, str | int | float | bool):
            raise ValidationError(
                f"attribute {name!r} must be a string, number or boolean",
                details={"attribute": name},
            )
        out[name] = value
    return out


def record_of(row: Principal) -> PrincipalRecord:
    return PrincipalRecord(
        id=row.id,
        roles=tuple(row.roles),
        attributes=dict(row.attributes),
        display_name=row.display_name,
        disabled=row.disabled,
    )


class PrincipalService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def upsert(
        self,
        pid: str,
        roles: list[str],
        attributes: Mapping[str, Any] | None = None,
        display_name: str = "",
    ) -> PrincipalRecord:
        validate_principal_id(pid)
        unknown = [r for r in roles if r not in ROLES]
        if not roles or unknown:
            raise ValidationError(
                f"roles must be a non-empty subset of {', '.join(ROLES)}",
                details={"unknown": unknown},
            )
        attrs = validate_attributes(attributes or {})
        with self.db.session() as s:
            row = s.get(Principal, pid)
            if row is None:
                row = Principal(id=pid)
                s.add(row)
            row.roles = list(dict.fromkeys(roles))
            row.attributes = attrs
            row.display_name = display_name
            row.disabled = False
            s.flush()
            return record_of(row)

    def get(self, pid: str) -> PrincipalRecord:
        with self.db.session() as s:
            row = s.get(Principal, pid)
            if row is None:
                raise PrincipalNotFound(f"no principal {pid[:200]!r}", details={"id": pid[:200]})
            return record_of(row)

    def all(self) -> list[PrincipalRecord]:
        with self.db.session() as s:
            return [record_of(r) for r in s.scalars(select(Principal).order_by(Principal.id))]

    def disable(self, pid: str) -> None:
        with self.db.session() as s:
            row = s.get(Principal, pid)
            if row is None:
                raise PrincipalNotFound(f"no principal {pid[:200]!r}", details={"id": pid[:200]})
            row.disabled = True
