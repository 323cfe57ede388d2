"""Fact extraction by sentence similarity: a second reader of the description beside the model.

For a fact with labels (``govern.compliance.facts``), short exemplar statements per label
(``policies/rules/exemplars/facts.yaml``) are embedded once. A description is cut into sentences
(plus the whole text, so a sentence that leans on its neighbour still counts) and each label's
score is its best cosine similarity to any sentence, times :data:`SCALE`; the ``unknown`` label
scores a constant 0, so its fitted bias is the learned "close enough" line. The scores are then
calibrated like the model's (``p = softmax(a * s + b)``, fitted on the ``fit`` split of the
labelled cases, stored in the calibration file under the embedder's name).

An answer is an *inferred* fact, exactly like a model answer: it may establish a violation or
add doubt, never make a verdict compliant. The description is only ever embedded, never
followed, so instructions inside it have nothing to act on.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml

from govern.compliance.calibration import Calibration, FitResult, Fitted, fit_questions
from govern.compliance.cases import Case, label_for
from govern.compliance.facts import FACTS
from govern.errors import ConfigError, GovernError

__all__ = [
    "SCALE",
    "EmbeddingFacts",
    "Exemplars",
    "TextEmbedder",
    "calibrate_embeddings",
    "default_exemplars_file",
    "load_exemplars",
]

# Cosine similarities live in [-1, 1] and differ between labels by a few hundredths to tenths;
# scaled like a contrastive model's logits so the calibration starts near a sensible scale.
SCALE = 20.0
UNKNOWN = "unknown"
MAX_SENTENCES = 48
_SPLIT = re.compile(r"(?<=[.!?;])\s+|\n+")

Exemplars = dict[str, dict[str, tuple[str, ...]]]  # fact -> label -> statements


class TextEmbedder(Protocol):
    name: str

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def default_exemplars_file(rules_dir: Path) -> Path:
    return Path(rules_dir) / "exemplars" / "facts.yaml"


def load_exemplars(path: Path) -> Exemplars:
    """Exemplars checked against the fact vocabulary: every fact must have labels, every label
    named must be one of the fact's (not ``unknown``), and at least two labels need statements."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{Path(path).name}: cannot read fact exemplars: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{Path(path).name}: must map fact names to labels")
    out: Exemplars = {}
    for fact, labels in raw.items():
        spec = FACTS.get(str(fact))
        if spec is None or not spec.labels or spec.question is None:
            raise ConfigError(f"{Path(path).name}: {fact!r} is not a fact with labels")
        if not isinstance(labels, dict) or len(labels) < 2:
            raise ConfigError(f"{Path(path).name}: {fact}: give statements for two labels or more")
        per: dict[str, tuple[str, ...]] = {}
        for label, statements in labels.items():
            name = str(label)
            if name not in spec.labels or name == UNKNOWN:
                raise ConfigError(
                    f"{Path(path).name}: {fact}: {name!r} is not one of its labels "
                    f"{[x for x in spec.labels if x != UNKNOWN]}"
                )
            if not isinstance(statements, list) or not all(
                isinstance(s, str) and s.strip() for s in statements
            ):
                raise ConfigError(f"{Path(path).name}: {fact}.{name}: a list of statements")
            per[name] = tuple(s.strip() for s in statements)
        out[str(fact)] = per
    return out


def sentences(text: str) -> list[str]:
    parts = [p.strip() for p in _SPLIT.split(text) if len(p.strip()) > 3]
    out = parts[:MAX_SENTENCES]
    if len(parts) > 1 and text.strip():
        out.append(text.strip())  # context across sentence breaks
    return out


@dataclass(frozen=True)
class EmbeddingAnswer:
    probs: dict[str, float] | None  # None: the embedder could not be used
    calibrated: bool
    error: str = ""


class EmbeddingFacts:
    """Thread-safe; the embedder is fetched on first use, so a missing one costs nothing until
    a description needs reading, and then only an evidence line."""

    def __init__(
        self,
        embedder: Callable[[], TextEmbedder],
        exemplars: Exemplars,
        calibration: Calibration,
        *,
        cache_size: int = 512,
    ) -> None:
        self._embedder = embedder
        self.exemplars = exemplars
        self.calibration = calibration
        self._vectors: dict[str, dict[str, np.ndarray[Any, Any]]] | None = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray[Any, Any]] = OrderedDict()
        self._cache_size = cache_size

    def name(self) -> str:
        return self._embedder().name

    def labels(self, fact: str) -> tuple[str, ...]:
        return tuple(FACTS[fact].labels)

    def _exemplar_vectors(self, emb: TextEmbedder) -> dict[str, dict[str, np.ndarray[Any, Any]]]:
        with self._lock:
            if self._vectors is not None:
                return self._vectors
        flat = [
            (f, lb, s) for f, per in self.exemplars.items() for lb, ss in per.items() for s in ss
        ]
        vecs = np.asarray(emb.embed([s for _, _, s in flat]), dtype=np.float32)
        grouped: dict[str, dict[str, list[np.ndarray[Any, Any]]]] = {}
        for (f, lb, _), v in zip(flat, vecs, strict=True):
            grouped.setdefault(f, {}).setdefault(lb, []).append(v)
        out = {f: {lb: np.stack(vs) for lb, vs in per.items()} for f, per in grouped.items()}
        with self._lock:
            self._vectors = out
        return out

    def _sentence_vectors(self, emb: TextEmbedder, text: str) -> np.ndarray[Any, Any]:
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit
        parts = sentences(text)
        vecs = np.asarray(emb.embed(parts), dtype=np.float32) if parts else np.zeros((0, 384))
        with self._lock:
            self._cache[text] = vecs
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return vecs

    def raw_scores(self, fact: str, text: str) -> dict[str, float]:
        """Each label's best scaled similarity to the text's sentences; ``unknown`` is 0.
        Raises GovernError (ModelUnavailable) when the embedder cannot be used."""
        emb = self._embedder()
        per = self._exemplar_vectors(emb)[fact]
        sent = self._sentence_vectors(emb, text)
        out: dict[str, float] = {}
        for label in self.labels(fact):
            if label in per and len(sent):
                out[label] = SCALE * float((sent @ per[label].T).max())
            else:
                out[label] = 0.0 if label == UNKNOWN else -SCALE  # no statements: never chosen
        # Centred on the labels' mean: every label of a relevant sentence scores high (the
        # embedder is weak on negation), so what tells the labels apart is the margin.
        named = [lb for lb in out if lb != UNKNOWN and lb in per]
        mean = sum(out[lb] for lb in named) / len(named) if named else 0.0
        return {lb: (v - mean if lb in named else v) for lb, v in out.items()}

    def answer(self, fact: str, text: str) -> EmbeddingAnswer:
        if fact not in self.exemplars or not text.strip():
            return EmbeddingAnswer(None, False, "no exemplars for this fact")
        try:
            emb = self._embedder()
            scores = self.raw_scores(fact, text)
        except GovernError as exc:
            return EmbeddingAnswer(None, False, exc.message)
        except (OSError, RuntimeError, ValueError) as exc:  # a broken model folder or runtime
            return EmbeddingAnswer(None, False, f"embedder failed: {exc}")
        probs, calibrated = self.calibration.probabilities(emb.name, f"fact:{fact}", scores)
        return EmbeddingAnswer(probs, calibrated)

    def fitted(self, fact: str) -> Fitted | None:
        try:
            name = self.name()
        except GovernError:
            return None
        return self.calibration.get(name, f"fact:{fact}", self.labels(fact))


def calibrate_embeddings(
    extractor: EmbeddingFacts,
    cases: Sequence[Case],
    rule_facts: Callable[[Case], Sequence[str]],
    previous: Calibration | None = None,
    max_chars: int = 2000,
    progress: Callable[[int, int], None] | None = None,
) -> FitResult:
    """Fit the extractor's per-fact calibration on the ``fit`` split only (the ``eval`` split
    stays held out); other models' entries in ``previous`` are kept. ``rule_facts`` names the
    facts of a case's rules (the questions the pipeline could ask for it)."""
    name = extractor.name()
    fit_cases = [c for c in cases if c.split == "fit" and c.description.strip()]
    data: dict[str, list[tuple[Mapping[str, float], str]]] = {}
    labels: dict[str, tuple[str, ...]] = {}
    for i, case in enumerate(fit_cases):
        text = case.description.strip()[:max_chars]
        # Every fact with exemplars, not only the case's rules' facts: a description that says
        # nothing about a fact is the extractor's commonest input, and the "unknown" it should
        # then answer is what keeps it from inventing violations.
        for fact in sorted(set(rule_facts(case)) | set(extractor.exemplars)):
            if fact not in extractor.exemplars:
                continue
            gold = label_for(fact, case.says.get(fact))
            if gold is None:
                continue
            q = f"fact:{fact}"
            data.setdefault(q, []).append((extractor.raw_scores(fact, text), gold))
            labels[q] = extractor.labels(fact)
        if progress is not None:
            progress(i + 1, len(fit_cases))
    return fit_questions(name, data, labels, previous)


def open_embedding_facts(
    rules_dir: Path, calibration: Calibration, threads: int = 2
) -> EmbeddingFacts | None:
    """The extractor over the shipped exemplars, or None when there is no exemplars file. The
    embedder itself is only looked for on first use (a missing wheel then reads as
    unavailable: evidence, never a verdict)."""
    path = default_exemplars_file(rules_dir)
    if not path.exists():
        return None
    from govern.compliance.model.embed import shared_embedder

    return EmbeddingFacts(lambda: shared_embedder(threads), load_exemplars(path), calibration)
