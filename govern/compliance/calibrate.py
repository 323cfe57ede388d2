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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from govern.compliance.calibration import Calibration, Fitted, fit, pool_id
from govern.compliance.cases import Case, label_for
from govern.compliance.facts import FACTS
from govern.compliance.pipeline import Assessor, fact_prompt, rule_prompt

__all__ = ["Prompt", "calibrate", "prompts_for"]

MIN_EXAMPLES = 8  # fewer: the question borrows its pool's fit


@dataclass(frozen=True)
class Prompt:
    question: str
    prompt: str
    labels: tuple[str, ...]
    gold: str


@dataclass
class Result:
    calibration: Calibration
    examples: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    fit_accuracy: dict[str, float] = field(default_factory=dict)


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
) -> Result:
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
    # Pools: every question of one kind with one label set, for questions with little data.
    pools: dict[str, list[tuple[Mapping[str, float], str]]] = {}
    for q, examples in data.items():
        pid = pool_id(q, labels[q])
        pools.setdefault(pid, []).extend(examples)
        labels[pid] = labels[q]
    models: dict[str, dict[str, Fitted]] = dict(previous.models) if previous else {}
    fitted: dict[str, Fitted] = {}
    result = Result(Calibration(models))
    for q, examples in sorted({**data, **pools}.items()):
        result.examples[q] = len(examples)
        golds = {g for _, g in examples}
        if len(examples) < MIN_EXAMPLES or len(golds) < 2:
            result.skipped[q] = f"{len(examples)} example(s), {len(golds)} label(s)"
            continue
        f = fit(labels[q], examples)
        fitted[q] = f
        right = sum(
            1 for s, g in examples if max(f.probabilities(s).items(), key=lambda kv: kv[1])[0] == g
        )
        result.fit_accuracy[q] = right / len(examples)
    models[model] = fitted
    return result


def summary(result: Result) -> dict[str, Any]:
    return {
        "fitted": sorted(result.fit_accuracy),
        "examples": result.examples,
        "skipped": result.skipped,
        "fit_accuracy": {k: round(v, 3) for k, v in result.fit_accuracy.items()},
    }
