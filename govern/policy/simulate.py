"""Policy impact: how Plans would change, per principal and dataset, under a proposed set."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from govern.auth import PrincipalRecord
from govern.catalog import DatasetInfo
from govern.engine import Engine
from govern.plan import Plan
from govern.policy.loaded import LoadedPolicy
from govern.policy.service import PolicyService

__all__ = ["Change", "purposes_of", "simulate"]


@dataclass(frozen=True)
class Change:
    principal: str
    role: str
    dataset: str
    purpose: str
    before: str
    after: str
    rows_before: int
    rows_after: int
    rows_gained: int
    rows_lost: int
    columns_unmasked: list[str] = field(default_factory=list)
    columns_masked: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def purposes_of(*policies: LoadedPolicy) -> list[str]:
    """Purposes named by row rules (the p field called ``purpose``), wildcards left out."""
    out: set[str] = set()
    for policy in policies:
        tokens = policy.model.model["p"]["p"].tokens
        if "p_purpose" not in tokens:
            continue
        # A stored rule starts with its ptype ("p"), so its fields sit one to the right of the
        # model's tokens.
        i = tokens.index("p_purpose") + 1
        out.update(r[i] for r in policy.row_rules if r[i] != "*")
    return sorted(out)


def _rows(engine: Engine, info: DatasetInfo, old: Plan, new: Plan) -> tuple[int, int, int, int]:
    return engine.compare(
        info, old.row_filter if old.allowed else None, new.row_filter if new.allowed else None
    )


def simulate(
    service: PolicyService,
    candidate: LoadedPolicy,
    principals: Iterable[PrincipalRecord],
    datasets: Sequence[DatasetInfo],
    engine: Engine,
    purposes: Sequence[str] | None = None,
) -> list[Change]:
    current = service.current
    changes = []
    for principal in principals:
        for role in principal.roles:
            subject = {**principal.attributes, "id": principal.id, "role": role}
            for info in datasets:
                for purpose in purposes or purposes_of(current, candidate):
                    kw = dict(subject=subject, dataset=info, action="read", purpose=purpose)
                    old = service.decide(**kw, columns=None, policy=current)  # type: ignore[arg-type]
                    new = service.decide(**kw, columns=None, policy=candidate)  # type: ignore[arg-type]
                    before, after, gained, lost = _rows(engine, info, old, new)
                    unmasked = [
                        c
                        for c, a in new.columns.items()
                        if a == "pass" and old.allowed and old.columns.get(c, "pass") != "pass"
                    ]
                    masked = [
                        c
                        for c, a in new.columns.items()
                        if a != "pass" and old.allowed and old.columns.get(c) == "pass"
                    ]
                    if (old.decision, before) == (new.decision, after) and not (
                        gained or lost or unmasked or masked
                    ):
                        continue
                    changes.append(
                        Change(
                            principal=principal.id,
                            role=role,
                            dataset=info.name,
                            purpose=purpose,
                            before=old.decision,
                            after=new.decision,
                            rows_before=before,
                            rows_after=after,
                            rows_gained=gained,
                            rows_lost=lost,
                            columns_unmasked=unmasked,
                            columns_masked=masked,
                        )
                    )
    return changes
