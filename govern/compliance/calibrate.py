"""Fit the calibration of one model on the ``fit`` split of the labelled cases.

For every case with a description, each fact question of the case's rules is asked and its
gold label is what the case ``says`` (or ``unknown``); each rule with a definite expected
verdict gives the rule cross-check a gold ``yes``/``no``. Raw label scores are collected, then
:func:`govern.compliance.calibration.fit` fits each question. Used by
``govern compliance calibrate``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from govern.compliance.calibration import Calibration, FitResult, fit_questions
from govern.compliance.cases import Case, label_for
from govern.compliance.facts import FACTS
from govern.compliance.pipeline import Assessor, fact_prompt, rule_prompt
from govern.compliance.prose import Trust, fit_trust
from govern.errors import ConfigError

__all__ = ["Prompt", "calibrate", "calibrate_prose", "prompts_for"]


@dataclass(frozen=True)
class Prompt:
    question: str
    prompt: str
    labels: tuple[str, ...]
    gold: str


def prompts_for(assessor: Assessor, case: Case) -> list[Prompt]:
    out: list[Prompt] = []
    inp = case.input()
    rules = assessor.library.select(list(case.expect))
    text, _ = assessor.description_for_model(inp.description)
    if text:
        for name in sorted({f for r in rules for f in r.facts}):
            spec = FACTS[name]
            if spec.question is None or not spec.labels:
                continue
            gold = label_for(name, case.says.get(name))
            if gold is None:
                continue
            labels = tuple(spec.labels)
            out.append(
                Prompt(f"fact:{name}", fact_prompt(spec.question, labels, text), labels, gold)
            )
    stated = assessor.stated_facts(inp, rules).values(with_inferred=False)
    for rule in rules:
        expected = case.expect[rule.id]
        if expected == "needs_review":
            continue
        out.append(
            Prompt(
                f"rule:{rule.id}",
                rule_prompt(rule, case.purpose, stated, text),
                ("yes", "no"),
                "yes" if expected == "compliant" else "no",
            )
        )
    return out


def calibrate(
    assessor: Assessor,
    cases: Sequence[Case],
    model: str,
    previous: Calibration | None = None,
    progress: Callable[[int, int], None] | None = None,
    score_cache: Path | None = None,
) -> FitResult:
    """Fit every question of ``model`` on the ``fit`` split; other models' entries are kept.

    Raw scores are kept in ``score_cache`` (by model, prompt and labels), so fitting again after
    a change to the fitting alone does not score again."""
    prompts = [p for c in cases if c.split == "fit" for p in prompts_for(assessor, c)]
    cache: dict[str, dict[str, float]] = {}
    if score_cache is not None:
        score_cache.parent.mkdir(parents=True, exist_ok=True)
        if score_cache.exists():
            cache = json.loads(score_cache.read_text(encoding="utf-8"))
    data: dict[str, list[tuple[Mapping[str, float], str]]] = {}
    labels: dict[str, tuple[str, ...]] = {}
    for i, p in enumerate(prompts):
        key = hashlib.sha256(f"{model}\0{'|'.join(p.labels)}\0{p.prompt}".encode()).hexdigest()
        scores = cache.get(key)
        if scores is None:
            scores = cache[key] = assessor.raw_scores(p.prompt, p.labels)
            if score_cache is not None and i % 10 == 9:
                score_cache.write_text(json.dumps(cache), encoding="utf-8")
        data.setdefault(p.question, []).append((scores, p.gold))
        labels[p.question] = p.labels
        if progress is not None:
            progress(i + 1, len(prompts))
    if score_cache is not None:
        score_cache.write_text(json.dumps(cache), encoding="utf-8")
    return fit_questions(model, data, labels, previous)


def calibrate_prose(assessor: Assessor, cases: Sequence[Case]) -> Trust:
    """The prose reader's trust, fitted on the ``fit`` split: per fact (:func:`fit_trust`), then
    per verdict: while a clear violation of the split comes out ``compliant`` on prose alone, the
    prose facts that verdict used lose their trust."""
    reader = assessor.prose
    if reader is None:
        raise ConfigError("the prose reader is off (compliance_prose_reader)")
    facts_of = {r.id: r.facts for r in assessor.library}
    trust = fit_trust(reader, cases, facts_of)
    violations = [c for c in cases if c.split == "fit" and c.kind == "clear_violation"]
    while True:
        reader.trust = trust
        blamed: set[str] = set()
        for case in violations:
            for v in assessor.assess(case.input(), list(case.expect), mode="conditions"):
                if v.verdict == "compliant":
                    blamed |= set(v.facts_used) & trust.trusted
        if not blamed:
            return trust
        trust = Trust(trust.reader, trust.trusted - blamed, trust.fit)
