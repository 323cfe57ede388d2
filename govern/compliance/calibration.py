"""Turning a model's raw label scores into calibrated probabilities, per question.

A backend returns, for each allowed label, the mean log-probability of the label's tokens. Those
scores are biased (by label length, by the label's prior) and over- or under-confident. For each
question this module fits ``p = softmax(a * s + b)`` (a scale ``a > 0`` and a bias per label) on
labelled cases, with an L2 pull towards ``a = 1, b = 0`` so that a handful of cases cannot make
it wildly confident. Parameters are stored per model name in ``policies/rules/calibration.json``
(written by ``govern compliance calibrate``). A question with no fitted parameters is
*uncalibrated*: its answer is shown as evidence but never decides anything.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from govern.errors import ConfigError

__all__ = ["SCORE_SPREAD", "Calibration", "Fitted", "fit", "pool_id"]

# Label scores are mean token log-probabilities; gaps beyond this many nats between the labels
# of one question are not seen in practice, so it bounds what a calibrated answer can reach.
SCORE_SPREAD = 20.0


def pool_id(question: str, labels: Sequence[str]) -> str:
    """The pooled entry for questions of one kind (``fact``/``rule``) with one label set."""
    return f"pool:{question.split(':', 1)[0]}:{'|'.join(labels)}"


@dataclass(frozen=True)
class Fitted:
    labels: tuple[str, ...]
    scale: float
    bias: tuple[float, ...]
    n: int

    def probabilities(self, scores: Mapping[str, float]) -> dict[str, float]:
        z = [
            self.scale * scores[label] + b for label, b in zip(self.labels, self.bias, strict=True)
        ]
        return _softmax(self.labels, z)

    def can_reach(self, label: str, threshold: float, spread: float = SCORE_SPREAD) -> bool:
        """Whether ``label`` can get probability >= threshold for scores within ``spread`` nats
        of each other: the best case is its score on top and every other ``spread`` below."""
        z = [
            self.scale * (0.0 if lb == label else -spread) + b
            for lb, b in zip(self.labels, self.bias, strict=True)
        ]
        return _softmax(self.labels, z)[label] >= threshold

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": list(self.labels),
            "scale": round(self.scale, 6),
            "bias": [round(b, 6) for b in self.bias],
            "n": self.n,
        }


def _softmax(labels: Sequence[str], z: Sequence[float]) -> dict[str, float]:
    m = max(z)
    e = [math.exp(v - m) for v in z]
    total = sum(e)
    return {label: v / total for label, v in zip(labels, e, strict=True)}


@dataclass
class Calibration:
    """Fitted parameters for each (model name, question id)."""

    models: dict[str, dict[str, Fitted]] = field(default_factory=dict)

    def get(self, model: str, question: str, labels: Sequence[str]) -> Fitted | None:
        """The question's own fit, else the pooled fit of every question with these labels
        (questions with too few labelled cases of their own borrow from their kind)."""
        fitted = self.models.get(model, {})
        own = fitted.get(question)
        if own is not None and own.labels == tuple(labels):
            return own
        pooled = fitted.get(pool_id(question, labels))
        if pooled is not None and pooled.labels == tuple(labels):
            return pooled
        return None

    def probabilities(
        self, model: str, question: str, scores: Mapping[str, float]
    ) -> tuple[dict[str, float], bool]:
        """Calibrated probabilities and True, or a plain softmax of the scores and False."""
        labels = tuple(scores)
        fitted = self.get(model, question, labels)
        if fitted is None:
            return _softmax(labels, [scores[label] for label in labels]), False
        return fitted.probabilities(scores), True

    @classmethod
    def load(cls, path: Path) -> Calibration:
        if not path.exists():
            return cls()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            models = {
                model: {
                    q: Fitted(
                        labels=tuple(p["labels"]),
                        scale=float(p["scale"]),
                        bias=tuple(float(b) for b in p["bias"]),
                        n=int(p["n"]),
                    )
                    for q, p in body["questions"].items()
                }
                for model, body in raw["models"].items()
            }
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path.name}: not a calibration file: {exc}") from exc
        return cls(models)

    def save(self, path: Path, meta: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        body = {
            "note": "written by `govern compliance calibrate`; do not edit by hand",
            "models": {
                model: {
                    **(dict(meta.get(model, {})) if meta else {}),
                    "questions": {q: f.to_json() for q, f in sorted(qs.items())},
                }
                for model, qs in sorted(self.models.items())
            },
        }
        path.write_text(json.dumps(body, indent=1, sort_keys=False) + "\n", encoding="utf-8")


def fit(
    labels: Sequence[str],
    examples: Sequence[tuple[Mapping[str, float], str]],
    *,
    l2: float = 0.5,
    steps: int = 400,
    lr: float = 0.1,
) -> Fitted:
    """Fit scale and biases by gradient descent on the mean negative log-likelihood plus
    ``l2 * ((a - 1)^2 + |b|^2) / n``."""
    k = len(labels)
    n = len(examples)
    s = np.array([[ex[0][label] for label in labels] for ex in examples], dtype=float)
    y = np.zeros((n, k))
    for i, (_, gold) in enumerate(examples):
        y[i, labels.index(gold)] = 1.0
    a, b = 1.0, np.zeros(k)
    reg = l2 / max(n, 1)
    for _ in range(steps):
        z = a * s + b
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - y) / n  # dNLL/dz
        grad_a = float((g * s).sum()) + 2 * reg * (a - 1.0)
        grad_b = g.sum(axis=0) + 2 * reg * b
        a = max(1e-3, a - lr * grad_a)
        b = b - lr * grad_b
        b -= b.mean()  # softmax is shift-invariant: keep the biases centred
    return Fitted(tuple(labels), float(a), tuple(float(x) for x in b), n)


MIN_EXAMPLES = 8  # fewer: the question borrows its pool's fit


@dataclass
class FitResult:
    calibration: Calibration
    examples: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    fit_accuracy: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "fitted": sorted(self.fit_accuracy),
            "examples": self.examples,
            "skipped": self.skipped,
            "fit_accuracy": {k: round(v, 3) for k, v in self.fit_accuracy.items()},
        }


def fit_questions(
    model: str,
    data: Mapping[str, Sequence[tuple[Mapping[str, float], str]]],
    labels: Mapping[str, tuple[str, ...]],
    previous: Calibration | None = None,
) -> FitResult:
    """Fit every question of ``model`` with enough examples, and a pool per kind of question
    and label set for those with too few; other models' entries in ``previous`` are kept."""
    pools: dict[str, list[tuple[Mapping[str, float], str]]] = {}
    all_labels = dict(labels)
    for q, examples in data.items():
        pid = pool_id(q, labels[q])
        pools.setdefault(pid, []).extend(examples)
        all_labels[pid] = labels[q]
    models: dict[str, dict[str, Fitted]] = dict(previous.models) if previous else {}
    fitted: dict[str, Fitted] = {}
    result = FitResult(Calibration(models))
    for q, examples in sorted({**data, **pools}.items()):
        result.examples[q] = len(examples)
        golds = {g for _, g in examples}
        if len(examples) < MIN_EXAMPLES or len(golds) < 2:
            result.skipped[q] = f"{len(examples)} example(s), {len(golds)} label(s)"
            continue
        f = fit(all_labels[q], examples)
        fitted[q] = f
        right = sum(
            1 for s, g in examples if max(f.probabilities(s).items(), key=lambda kv: kv[1])[0] == g
        )
        result.fit_accuracy[q] = right / len(examples)
    models[model] = fitted
    return result
