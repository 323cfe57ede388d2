"""Benchmark: compliance verdicts on the labelled cases, three ways side by side.

One run, one JSON line on stdout (also written to bench/results/compliance.json):

- ``pipeline``: the full pipeline (stated facts, rule conditions, the local model's calibrated
  fact questions and cross-checks);
- ``conditions``: the rule conditions alone on stated facts and exact phrases (no model);
- ``model``: the local model alone, asked each rule's question and taken at its calibrated word.

For each: accuracy on clear cases, false-compliant rate on clear violations (the goal is 0),
review rate, and accuracy on borderline cases, over every (case, rule) pair, and separately
over the ``eval`` split the calibration was not fitted on. Plus the median and p90 wall time
of one full assessment with the local model (loaded before timing; its load time is reported
apart), with a fresh answer cache per case so no case reuses another's answers.

Usage: ``python bench/compliance.py [--cases DIR] [--limit N]``.

``--prose`` runs the prose benchmark instead (issue 16; result ``compliance_prose``): the
prose-only cases (``tests/compliance/prose``) sent as a description alone, and again with the
facts each description states sent as structured facts too, per reader: ``cues`` (the exact
phrases only), ``spacy`` (the parse-based prose reader, rule conditions decide, no model),
and ``spacy_smollm2`` (the full pipeline with the local model's fact questions and
cross-checks). Figures per split, and per rule on the held-out (``eval``) split; median and p90
of one assessment. ``--readers`` picks readers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from report import emit

from govern.compliance import Assessor, Calibration, load_library
from govern.compliance.cases import Case, default_cases_dir, default_prose_dir, load_cases
from govern.compliance.inputs import AssessmentInput
from govern.compliance.model.base import NoModel
from govern.compliance.model.local import shared_local_model
from govern.compliance.pipeline import Mode
from govern.compliance.prose import ProseReader, Trust
from govern.resources import policies_dir
from govern.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
MODEL_CACHE = REPO / ".cache" / "govern-models"


def scores(rows: Sequence[tuple[Case, str, str]]) -> dict[str, Any]:
    """rows: (case, expected, got) per (case, rule) pair."""
    clear = [r for r in rows if r[0].clear]
    violations = [r for r in rows if r[0].kind == "clear_violation"]
    borderline = [r for r in rows if r[0].kind == "borderline"]

    def rate(xs: Sequence[tuple[Case, str, str]], ok: Any) -> float | None:
        return round(sum(1 for x in xs if ok(x)) / len(xs), 4) if xs else None

    return {
        "pairs": len(rows),
        "accuracy_clear": rate(clear, lambda r: r[1] == r[2]),
        "false_compliant_rate_clear_violations": rate(violations, lambda r: r[2] == "compliant"),
        "review_rate": rate(rows, lambda r: r[2] == "needs_review"),
        "accuracy_borderline": rate(borderline, lambda r: r[1] == r[2]),
        "accuracy_all": rate(rows, lambda r: r[1] == r[2]),
    }


# (case, expected, the model's preferred verdict) for the model alone, whatever its confidence.
forced: list[tuple[Case, str, str]] = []


def run_mode(
    assessor: Assessor, cases: Sequence[Case], mode: Mode, timings: list[float] | None = None
) -> list[tuple[Case, str, str]]:
    rows: list[tuple[Case, str, str]] = []
    for i, case in enumerate(cases):
        assessor.clear_cache()  # each case pays for its own questions
        started = time.perf_counter()
        verdicts = assessor.assess(case.input(), list(case.expect), mode=mode)
        if timings is not None:
            timings.append(time.perf_counter() - started)
        for v in verdicts:
            rows.append((case, case.expect[v.rule], v.verdict))
            if mode == "model":
                said = "compliant" if v.rationale.startswith("model answered 'yes'") else (
                    "non_compliant" if v.rationale.startswith("model answered 'no'") else
                    "needs_review"
                )  # fmt: skip
                forced.append((case, case.expect[v.rule], said))
        print(f"\r{mode}: {i + 1}/{len(cases)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return rows


def _pct(xs: Sequence[float], q: float) -> float | None:
    xs = sorted(xs)
    return round(xs[int(q * (len(xs) - 1))], 3) if xs else None


def prose_bench(args: argparse.Namespace) -> None:
    rules_dir = policies_dir() / "rules"
    library = load_library(rules_dir)
    cases = load_cases(args.cases or default_prose_dir(), library)
    if args.limit:
        cases = cases[: args.limit]
    calibration = Calibration.load(rules_dir / "calibration.json")
    trust = Trust.load(rules_dir / "prose_trust.json")
    reader = ProseReader(trust)
    started = time.perf_counter()
    reader.nlp()
    result: dict[str, Any] = {
        "bench": "compliance_prose",
        "cases": len(cases),
        "split_sizes": {s: sum(1 for c in cases if c.split == s) for s in ("fit", "eval")},
        "trusted_facts": sorted(trust.trusted),
        "spacy_load_seconds": round(time.perf_counter() - started, 2),
        "goal": {"false_compliant": 0, "accuracy_clear": 0.8, "review_rate": 0.35, "median_s": 2},
    }
    readers = args.readers.split(",")
    model: Any = None
    if any("smollm2" in r for r in readers):
        home = Path(tempfile.mkdtemp(prefix="govern-bench-"))
        settings = load_settings(home=home, config=home / "none.toml", llm_cache_dir=MODEL_CACHE)
        model = shared_local_model(settings)
        started = time.perf_counter()
        if not model.wait_ready(900):
            raise SystemExit("the local model did not load")
        result["llm"] = model.name
        result["model_load_seconds"] = round(time.perf_counter() - started, 2)
    for name in readers:
        uses_model = "smollm2" in name
        assessor = Assessor(
            library,
            (lambda: model) if uses_model else NoModel,
            calibration,
            prose=reader if name != "cues" else None,
        )
        mode: Mode = "full" if uses_model else "conditions"
        # The model's configurations are slow on this CPU: held-out split only.
        todo = [c for c in cases if c.split == "eval"] if uses_model else cases
        entry: dict[str, Any] = {"mode": mode, "cases_run": len(todo)}
        for variant in ("prose_only", "with_facts"):
            rows: list[tuple[Case, str, str]] = []
            timings: list[float] = []
            for i, case in enumerate(todo):
                inp = AssessmentInput(
                    purpose=case.purpose,
                    facts=dict(case.says) if variant == "with_facts" else {},
                    description=case.description,
                )
                assessor.clear_cache()
                t0 = time.perf_counter()
                verdicts = assessor.assess(inp, list(case.expect), mode=mode)
                timings.append(time.perf_counter() - t0)
                rows += [(case, case.expect[v.rule], v.verdict) for v in verdicts]
                print(f"\r{name} {variant}: {i + 1}/{len(todo)}", end="", file=sys.stderr)
            print(file=sys.stderr)
            held = [r for r in rows if r[0].split == "eval"]
            entry[variant] = {
                "eval_split": scores(held),
                "fit_split": scores([r for r in rows if r[0].split == "fit"])
                if not uses_model
                else None,
                "latency_seconds": {"median": _pct(timings, 0.5), "p90": _pct(timings, 0.9)},
                "eval_per_rule": {
                    rule: scores(
                        [r for r in held if rule in r[0].expect and r[0].expect[rule] == r[1]]
                    )
                    for rule in sorted(library.rules)
                },
            }
        result[name] = entry
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    emit("compliance_prose", result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=0, help="only the first N cases")
    parser.add_argument("--prose", action="store_true", help="the prose benchmark (issue 16)")
    parser.add_argument("--readers", default="cues,spacy,spacy_smollm2")
    args = parser.parse_args()
    if args.prose:
        prose_bench(args)
        return
    args.cases = args.cases or default_cases_dir()

    rules_dir = policies_dir() / "rules"
    library = load_library(rules_dir)
    cases = load_cases(args.cases, library)
    if args.limit:
        cases = cases[: args.limit]
    calibration = Calibration.load(rules_dir / "calibration.json")
    home = Path(tempfile.mkdtemp(prefix="govern-bench-"))
    settings = load_settings(home=home, config=home / "none.toml", llm_cache_dir=MODEL_CACHE)
    model = shared_local_model(settings)
    started = time.perf_counter()
    if not model.wait_ready(600):
        raise SystemExit("the local model did not load")
    load_seconds = time.perf_counter() - started
    assessor = Assessor(
        library,
        lambda: model,
        calibration,
        threshold=settings.compliance_confidence_threshold,
        max_description_chars=settings.compliance_max_description_chars,
        max_questions=settings.compliance_max_model_questions,
    )
    timings: list[float] = []
    result: dict[str, Any] = {
        "bench": "compliance",
        "llm": model.name,  # not "model": that key holds the model-alone figures
        "calibrated_questions": len(calibration.models.get(model.name, {})),
        "threshold": settings.compliance_confidence_threshold,
        "cases": len(cases),
        "model_load_seconds": round(load_seconds, 2),
    }
    for mode in ("pipeline", "conditions", "model"):
        rows = run_mode(
            assessor,
            cases,
            "full" if mode == "pipeline" else mode,  # type: ignore[arg-type]
            timings if mode == "pipeline" else None,
        )
        result[mode] = {
            "all": scores(rows),
            "eval_split": scores([r for r in rows if r[0].split == "eval"]),
        }
        if mode == "model":
            # The model's bare preference, ignoring its (calibrated) confidence: how often
            # its answer would be right if it were simply believed.
            clear = [(c, e, w) for c, e, w in forced if c.clear]
            result[mode]["accuracy_clear_if_believed"] = round(
                sum(1 for _, e, w in clear if e == w) / len(clear), 4
            )
            result[mode]["false_compliant_rate_if_believed"] = round(
                sum(1 for c, _, w in clear if c.kind == "clear_violation" and w == "compliant")
                / max(1, sum(1 for c, _, _ in clear if c.kind == "clear_violation")),
                4,
            )
    described = sorted(t for t, c in zip(timings, cases, strict=True) if c.description)
    timings.sort()
    result["pipeline_latency_seconds"] = {
        "median": round(statistics.median(timings), 3),
        "p90": round(timings[int(0.9 * (len(timings) - 1))], 3),
        "max": round(timings[-1], 3),
        # Only cases with a description ask the model anything; their median is the honest one.
        "median_with_description": round(statistics.median(described), 3) if described else None,
        "cases_with_description": len(described),
        "goal_median": 2.0,
    }
    result["load_average_1min"] = round(os.getloadavg()[0], 2)  # the CPU is shared
    emit("compliance", result)


if __name__ == "__main__":
    main()
