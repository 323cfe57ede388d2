"""Column actions from column rules (ptype ``p2``), evaluated by Casbin itself.

A column rule is ``p2, sub_rule, dataset, tag, purpose, action``: for subjects matching
``sub_rule`` (a Casbin expression over ``r.sub``), on datasets matching ``dataset``
(keyMatch), columns carrying a tag matching ``tag`` (keyMatch, so ``pii.*`` works), for
``purpose`` (or ``*``), the column gets ``action``. Where several rules match, the strictest
action wins (drop > redact > hash > truncate > generalize_date > noise > pass); a column no
rule matches passes. The rules run through a real casbin.Enforcer, with the rules ordered
strictest first so that Casbin's first match is the strictest one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import casbin

from govern.errors import PolicyInvalid
from govern.plan import COLUMN_ACTIONS
from govern.policy.compiler import casbin_request
from govern.policy.sandbox import check_expression

__all__ = ["COLUMN_MODEL", "ColumnDecision", "ColumnRules"]

COLUMN_MODEL = """
[request_definition]
r = sub, obj, act, purpose

[policy_definition]
p = sub_rule, dataset, tag, purpose, action

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = eval(p.sub_rule) && keyMatch(r.obj.dataset, p.dataset) && keyMatch(r.obj.tag, p.tag) \
&& (p.purpose == "*" || r.purpose == p.purpose)
"""

# What a column rule's sub_rule may name: the request, and the column rule's own fields.
_REQUEST_NAMES = frozenset(
    {"r_sub", "r_obj", "r_act", "r_purpose"}
    | {"p_sub_rule", "p_dataset", "p_tag", "p_purpose", "p_action"}
)


@dataclass(frozen=True)
class ColumnDecision:
    action: str
    reason: str


class ColumnRules:
    def __init__(self, rules: Sequence[Sequence[str]]) -> None:
        p2 = [list(r[1:]) for r in rules if r and r[0] == "p2"]
        for rule in p2:
            if len(rule) != 5:
                raise PolicyInvalid(
                    "column rules (p2) have 5 fields: sub_rule, dataset, tag, purpose, action",
                    details={"rule": rule},
                )
            # Inlined by eval() into the matcher: checked now, not first met by a decision.
            check_expression(rule[0], _REQUEST_NAMES, f"column rule {rule[:4]}")
            if rule[4] not in COLUMN_ACTIONS:
                raise PolicyInvalid(
                    f"unknown column action {rule[4]!r}",
                    details={"rule": rule, "actions": list(COLUMN_ACTIONS)},
                )
        p2.sort(key=lambda r: COLUMN_ACTIONS.index(r[4]))
        self.rules = p2
        model = casbin.model.Model()
        model.load_model_from_text(COLUMN_MODEL)
        self._enforcer = casbin.Enforcer(model)
        self._enforcer.logger.disabled = True
        for rule in p2:
            self._enforcer.add_policy(*rule)

    def decide(
        self,
        subject: Mapping[str, Any],
        dataset: str,
        purpose: str,
        columns: Mapping[str, Sequence[str]],
    ) -> dict[str, ColumnDecision]:
        """The action for each column, given its tags."""
        out: dict[str, ColumnDecision] = {}
        for column, tags in columns.items():
            best: ColumnDecision | None = None
            for tag in tags:
                found = self._match(subject, dataset, purpose, column, tag)
                if best is None or COLUMN_ACTIONS.index(found.action) < COLUMN_ACTIONS.index(
                    best.action
                ):
                    best = found
            out[column] = best or ColumnDecision("pass", "")
        return out

    def _match(
        self, subject: Mapping[str, Any], dataset: str, purpose: str, column: str, tag: str
    ) -> ColumnDecision:
        if not self.rules:
            # Casbin evaluates the matcher once with empty rule fields when it holds no rules,
            # and eval("") raises: without this a set with no column rules would drop every
            # tagged column instead of passing it.
            return ColumnDecision("pass", "")
        sub, obj = casbin_request(subject, dataset, {"tag": tag, "column": column})
        try:
            allowed, explain = self._enforcer.enforce_ex(sub, obj, "read", purpose)
        except Exception as exc:
            return ColumnDecision(
                "drop", f"column {column}: rule evaluation failed ({type(exc).__name__})"
            )
        if not allowed or not explain:
            return ColumnDecision("pass", "")
        action = explain[-1]
        return ColumnDecision(action, f"column {column} ({tag}): {action} by column rule")
