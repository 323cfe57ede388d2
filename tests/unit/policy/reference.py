"""Strategies and an independent reference for the policy tests that check reports (simulate,
``policy test``) against Casbin itself: generated edits of the demo set, the rows a real
casbin.Enforcer allows asked row by row, and column actions read from the rules directly."""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any

import casbin
from hypothesis import strategies as st

from govern.plan import COLUMN_ACTIONS
from govern.policy.files import read_rules
from govern.resources import policies_dir

Rule = tuple[str, ...]

# Subject rules the column reference can evaluate by itself (and that raise for no principal).
SUB_RULES = {
    "r.sub.role == 'trainer'": lambda s: s["role"] == "trainer",
    "r.sub.role == 'auditor'": lambda s: s["role"] == "auditor",
    "r.sub.role in ('steward', 'auditor', 'compliance')": lambda s: (
        s["role"] in ("steward", "auditor", "compliance")
    ),
    "r.sub.role != 'admin'": lambda s: s["role"] != "admin",
    "True": lambda s: True,
}
ROW_RULES = {
    "patient_notes": [
        "r.obj.age < 18",
        "r.obj.age >= 40",
        "r.obj.consent_research == True",
        "r.obj.region == r.sub.region",
        "True",
    ],
    "chat_logs": ["r.obj.toxicity < 0.2", "r.obj.consent_training == True", "True"],
    "code_corpus": ["r.obj.stars > 10", "r.obj.licence == 'mit'", "True"],
    "*": ["True"],
}
PURPOSES = ["training", "audit", "evaluation", "*"]
TAGS = ["pii.email", "pii.id", "pii.date", "pii.quasi", "pii.freetext", "pii.*", "health", "*"]


def demo_rules() -> list[Rule]:
    return [tuple(r) for r in read_rules(policies_dir() / "demo.csv")]


def key_match(key: str, pattern: str) -> bool:
    # Casbin's keyMatch: a '*' matches any rest of the key.
    star = pattern.find("*")
    return key == pattern if star < 0 else key[:star] == pattern[:star]


# --- generated edits --------------------------------------------------------------------------


@st.composite
def edited_sets(draw: st.DrawFn) -> list[Rule]:
    out: list[Rule] = []
    for rule in demo_rules():
        what = draw(st.sampled_from(["keep"] * 4 + ["drop", "change"]))
        if what == "drop":
            continue
        if what == "change":
            rule = draw(changed(rule))
        out.append(rule)
    out.extend(draw(st.lists(new_rule(), max_size=3)))
    return out


def changed(rule: Rule) -> st.SearchStrategy[Rule]:
    if rule[0] == "p":
        _, sub, dataset, act, purpose, obj, eft = rule
        return st.one_of(
            st.just((*rule[:6], "deny" if eft == "allow" else "allow")),
            st.sampled_from(PURPOSES).map(lambda p: (rule[0], sub, dataset, act, p, obj, eft)),
            st.sampled_from(list(SUB_RULES)).map(
                lambda s: (rule[0], s, dataset, act, purpose, obj, eft)
            ),
        )
    _, sub, dataset, tag, purpose, action = rule
    return st.one_of(
        st.sampled_from(COLUMN_ACTIONS).map(lambda a: (*rule[:5], a)),
        st.sampled_from(TAGS).map(lambda t: (rule[0], sub, dataset, t, purpose, action)),
        st.sampled_from(PURPOSES).map(lambda p: (rule[0], sub, dataset, tag, p, action)),
        st.sampled_from(list(SUB_RULES)).map(lambda s: (rule[0], s, dataset, tag, purpose, action)),
    )


@st.composite
def new_rule(draw: st.DrawFn) -> Rule:
    sub = draw(st.sampled_from(list(SUB_RULES)))
    purpose = draw(st.sampled_from(PURPOSES))
    dataset = draw(st.sampled_from(list(ROW_RULES)))
    if draw(st.booleans()):
        obj = draw(st.sampled_from(ROW_RULES[dataset]))
        return ("p", sub, dataset, "read", purpose, obj, draw(st.sampled_from(["allow", "deny"])))
    tag = draw(st.sampled_from(TAGS))
    return ("p2", sub, dataset, tag, purpose, draw(st.sampled_from(COLUMN_ACTIONS)))


# --- the reference ----------------------------------------------------------------------------

_ALLOWED: dict[tuple[Any, ...], frozenset[int]] = {}


def casbin_rows(
    model: str,
    rules: Sequence[Rule],
    subject: dict[str, Any],
    dataset: str,
    rows: Sequence[dict[str, Any]],
    purpose: str,
    source: str,
) -> frozenset[int]:
    """The indexes of the rows a real enforcer allows, asked row by row. Only rules whose
    dataset and purpose fields can match take part (the matcher requires both), which lets an
    edit that leaves them alone reuse the answer (``source`` names the rows, for that)."""
    relevant = tuple(
        sorted(
            r for r in rules if r[0] == "p" and key_match(dataset, r[2]) and r[4] in ("*", purpose)
        )
    )
    if not relevant:
        return frozenset()
    key = (model, repr(sorted(subject.items())), dataset, source, purpose, relevant)
    if key in _ALLOWED:
        return _ALLOWED[key]
    enforcer = casbin.Enforcer(casbin.Enforcer.new_model(text=model))
    enforcer.logger.disabled = True
    for rule in relevant:
        enforcer.add_policy(*rule[1:])
    sub = types.SimpleNamespace(**subject)
    out = set()
    for i, row in enumerate(rows):
        obj = types.SimpleNamespace(dataset=dataset, **row)
        try:
            if enforcer.enforce(sub, obj, "read", purpose) is True:
                out.add(i)
        except Exception:
            continue
    _ALLOWED[key] = frozenset(out)
    return _ALLOWED[key]


def column_actions(
    rules: Sequence[Rule],
    subject: dict[str, Any],
    dataset: str,
    tags: dict[str, Sequence[str]],
    purpose: str,
) -> dict[str, str]:
    """Each column's action: the strictest of the column rules that match it, else pass."""
    out = {}
    for column, column_tags in tags.items():
        action = "pass"
        for _, sub, pattern, tag, rule_purpose, rule_action in (r for r in rules if r[0] == "p2"):
            if (
                SUB_RULES[sub](subject)
                and key_match(dataset, pattern)
                and any(key_match(t, tag) for t in column_tags)
                and rule_purpose in ("*", purpose)
                and COLUMN_ACTIONS.index(rule_action) < COLUMN_ACTIONS.index(action)
            ):
                action = rule_action
        out[column] = action
    return out
