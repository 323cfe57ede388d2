"""The legal rule library: one YAML file per rule under ``policies/rules/``.

Each file holds ``id``, ``law``, ``article``, ``title``, ``text`` (the rule in plain words),
``facts`` (what it depends on), ``applies_when`` (a condition; the rule is presumed to apply
unless it is false on the known facts), ``non_compliant_when`` and ``compliant_when`` (lists of
``{when, reason}``) and ``question`` (what the model is asked as a cross-check). Files are loaded
and validated at start; a bad file is a ``RuleLibraryError`` naming the file and the problem.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from govern.compliance.conditions import Condition, ConditionError, parse_condition
from govern.compliance.facts import FACTS
from govern.errors import ConfigError, ValidationError

__all__ = ["Clause", "Rule", "RuleLibrary", "RuleLibraryError", "load_library"]

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,99}$")
_KEYS = {
    "id",
    "law",
    "article",
    "title",
    "text",
    "facts",
    "applies_when",
    "non_compliant_when",
    "compliant_when",
    "question",
}
_REQUIRED = {"id", "law", "article", "title", "text", "facts", "applies_when", "question"}


class RuleLibraryError(ConfigError):
    code = "rule_library_invalid"


@dataclass(frozen=True)
class Clause:
    when: Condition
    reason: str


@dataclass(frozen=True)
class Rule:
    id: str
    law: str
    article: str
    title: str
    text: str
    facts: tuple[str, ...]
    applies_when: Condition
    non_compliant_when: tuple[Clause, ...]
    compliant_when: tuple[Clause, ...]
    question: str
    path: Path

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "law": self.law,
            "article": self.article,
            "title": self.title,
            "text": self.text,
            "facts": list(self.facts),
            "applies_when": self.applies_when.source,
            "non_compliant_when": [
                {"when": c.when.source, "reason": c.reason} for c in self.non_compliant_when
            ],
            "compliant_when": [
                {"when": c.when.source, "reason": c.reason} for c in self.compliant_when
            ],
        }


@dataclass(frozen=True)
class RuleLibrary:
    rules: Mapping[str, Rule]

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules.values())

    def __len__(self) -> int:
        return len(self.rules)

    def select(self, ids: Sequence[str] | None) -> list[Rule]:
        """The named rules (all when None); unknown ids are a 422 naming them."""
        if ids is None:
            return list(self.rules.values())
        unknown = [i[:100] for i in ids if i not in self.rules]
        if unknown:
            raise ValidationError(
                f"unknown rule id(s): {', '.join(unknown[:20])}",
                details={"unknown_rules": unknown, "known_rules": sorted(self.rules)},
            )
        return [self.rules[i] for i in dict.fromkeys(ids)]


def load_library(directory: Path) -> RuleLibrary:
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise RuleLibraryError(f"no rule files (*.yaml) in {directory}")
    rules: dict[str, Rule] = {}
    for path in files:
        rule = _load(path)
        if rule.id in rules:
            raise RuleLibraryError(
                f"{path.name}: rule id {rule.id!r} is also defined in {rules[rule.id].path.name}"
            )
        rules[rule.id] = rule
    return RuleLibrary(rules)


def _load(path: Path) -> Rule:
    def fail(message: str) -> RuleLibraryError:
        return RuleLibraryError(f"{path.name}: {message}", details={"file": str(path)})

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise fail(f"cannot be read as YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise fail("must be a mapping")
    missing = _REQUIRED - raw.keys()
    extra = raw.keys() - _KEYS
    if missing:
        raise fail(f"missing keys: {', '.join(sorted(missing))}")
    if extra:
        raise fail(f"unknown keys: {', '.join(sorted(str(k) for k in extra))}")
    for key in ("id", "law", "article", "title", "text", "question"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise fail(f"{key} must be a non-empty string")
    rid = raw["id"].strip()
    if not _ID.match(rid):
        raise fail(f"id {rid!r} must be lowercase letters, digits and dashes")
    if path.stem != rid:
        raise fail(f"the file must be named after its id ({rid}.yaml)")
    facts = raw["facts"]
    if not isinstance(facts, list) or not all(isinstance(f, str) for f in facts) or not facts:
        raise fail("facts must be a non-empty list of fact names")
    unknown = [f for f in facts if f not in FACTS]
    if unknown:
        raise fail(f"unknown facts: {', '.join(unknown)}")

    def condition(source: Any, where: str) -> Condition:
        try:
            cond = parse_condition(source)
        except ConditionError as exc:
            raise fail(f"{where}: {exc}") from exc
        undeclared = cond.facts - set(facts)
        if undeclared:
            raise fail(f"{where}: names facts not listed in facts: {', '.join(sorted(undeclared))}")
        for fact, values in cond.comparisons:
            domain = FACTS[fact].values
            if domain and any(v not in domain for v in values):
                raise fail(f"{where}: {fact} takes {list(domain)}, not {list(values)}")
        return cond

    def clauses(key: str) -> tuple[Clause, ...]:
        items = raw.get(key) or []
        if not isinstance(items, list):
            raise fail(f"{key} must be a list of {{when, reason}}")
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or set(item) != {"when", "reason"}:
                raise fail(f"{key}[{i}] must have exactly 'when' and 'reason'")
            if not isinstance(item["reason"], str) or not item["reason"].strip():
                raise fail(f"{key}[{i}].reason must be a non-empty string")
            out.append(Clause(condition(item["when"], f"{key}[{i}]"), item["reason"].strip()))
        return tuple(out)

    non_compliant = clauses("non_compliant_when")
    compliant = clauses("compliant_when")
    if not non_compliant and not compliant:
        raise fail("needs at least one of non_compliant_when, compliant_when")
    return Rule(
        id=rid,
        law=raw["law"].strip(),
        article=raw["article"].strip(),
        title=raw["title"].strip(),
        text=" ".join(raw["text"].split()),
        facts=tuple(facts),
        applies_when=condition(raw["applies_when"], "applies_when"),
        non_compliant_when=non_compliant,
        compliant_when=compliant,
        question=" ".join(raw["question"].split()),
        path=path,
    )
