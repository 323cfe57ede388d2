"""Policy sets in the metadata store, and a Casbin adapter that loads one of them.

Sets are immutable and numbered; saving a set adds a row, so every Plan's ``policy_version``
names exactly the rules that produced it and old versions stay auditable.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import casbin
from sqlalchemy import func, select

from govern.store.db import Database
from govern.store.models import PolicySet

__all__ = ["PolicySetAdapter", "PolicyStore", "StoredPolicy"]

Rule = tuple[str, ...]


@dataclass(frozen=True)
class StoredPolicy:
    version: int
    model: str
    rules: tuple[Rule, ...]
    sha256: str
    created_by: str


def digest(model: str, rules: Sequence[Sequence[str]]) -> str:
    body = json.dumps({"model": model, "rules": [list(r) for r in rules]}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


class PolicyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def latest_version(self) -> int | None:
        with self.db.session() as s:
            v: int | None = s.scalar(select(func.max(PolicySet.id)))
            return v

    def get(self, version: int | None = None) -> StoredPolicy | None:
        with self.db.session() as s:
            q = select(PolicySet)
            q = q.where(PolicySet.id == version) if version else q.order_by(PolicySet.id.desc())
            row = s.scalar(q.limit(1))
            if row is None:
                return None
            return StoredPolicy(
                version=row.id,
                model=row.model,
                rules=tuple(tuple(r) for r in row.rules),
                sha256=row.sha256,
                created_by=row.created_by,
            )

    def save(self, model: str, rules: Sequence[Sequence[str]], created_by: str) -> int:
        with self.db.session() as s:
            row = PolicySet(
                model=model,
                rules=[list(r) for r in rules],
                sha256=digest(model, rules),
                created_by=created_by,
            )
            s.add(row)
            s.flush()
            return row.id


class PolicySetAdapter(casbin.persist.Adapter):  # type: ignore[misc]
    """A read-only Casbin adapter over one stored policy set (or given rules).

    Changes go through PolicyService, which writes a whole new set; so the mutating adapter
    calls refuse rather than silently doing nothing.
    """

    def __init__(self, rules: Sequence[Sequence[str]]) -> None:
        self.rules = [tuple(r) for r in rules]

    def load_policy(self, model: Any) -> None:
        for rule in self.rules:
            ptype = rule[0]
            sec = ptype[0]
            if sec in model.model and ptype in model.model[sec]:
                model.model[sec][ptype].policy.append(list(rule[1:]))

    def save_policy(self, model: Any) -> bool:
        raise NotImplementedError("policy sets are immutable; save a new set instead")

    def add_policy(self, sec: str, ptype: str, rule: Sequence[str]) -> bool:
        raise NotImplementedError("policy sets are immutable; save a new set instead")

    def remove_policy(self, sec: str, ptype: str, rule: Sequence[str]) -> bool:
        raise NotImplementedError("policy sets are immutable; save a new set instead")

    def remove_filtered_policy(
        self, sec: str, ptype: str, field_index: int, *field_values: str
    ) -> bool:
        raise NotImplementedError("policy sets are immutable; save a new set instead")
