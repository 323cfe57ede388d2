"""Realistic generated datasets, deterministic by seed, built batch by batch.

Each has a data-subject column, columns tagged as sensitive, and values that the demo policies
filter on (region, consent, age, licence), so the demo shows row filters and masks at work.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

__all__ = ["DEMO_DATASETS", "DemoDataset"]

_BATCH = 10_000


@dataclass(frozen=True)
class DemoDataset:
    name: str
    description: str
    subject_column: str
    rows: int
    tags: dict[str, list[str]]
    make_batch: Callable[[np.random.Generator, int, int], pa.RecordBatch] = field(repr=False)

    def batches(self, rows: int | None = None, seed: int = 7) -> Iterator[pa.RecordBatch]:
        total = self.rows if rows is None else rows
        rng = np.random.default_rng(seed)
        for start in range(0, total, _BATCH):
            yield self.make_batch(rng, start, min(_BATCH, total - start))


_REGIONS = np.array(["eu", "us", "apac"])
_DIAGNOSES = np.array(["E11.9", "I10", "J45.909", "F32.A", "M54.5", "K21.9", "C50.911", "N39.0"])
_DIAG_TEXT = {
    "E11.9": "type 2 diabetes, metformin continued",
    "I10": "essential hypertension, blood pressure 150/95",
    "J45.909": "asthma, inhaler technique reviewed",
    "F32.A": "depressive episode, referred to counselling",
    "M54.5": "low back pain after lifting, physiotherapy advised",
    "K21.9": "reflux symptoms, PPI started",
    "C50.911": "breast mass, biopsy scheduled with oncology",
    "N39.0": "urinary tract infection, antibiotics for 5 days",
}
_FIRST = np.array(
    ["Ana", "Ben", "Chloe", "Dmitri", "Elif", "Farah", "Goran", "Hana", "Ivan", "Jia"]
)
_LAST = np.array(["Novak", "Smith", "Garcia", "Kowalski", "Tanaka", "Okafor", "Larsen", "Rossi"])


def _patient_notes(rng: np.random.Generator, start: int, n: int) -> pa.RecordBatch:
    ids = np.arange(start, start + n)
    patient = rng.integers(0, 20_000, n)
    diag = rng.choice(_DIAGNOSES, n)
    first = rng.choice(_FIRST, n)
    last = rng.choice(_LAST, n)
    day0 = dt.date(2019, 1, 1).toordinal()
    admitted = [dt.date.fromordinal(int(day0 + d)) for d in rng.integers(0, 6 * 365, n)]
    notes = [
        f"{f} {ln} seen for {_DIAG_TEXT[d]}. Follow-up in {int(w)} weeks."
        for f, ln, d, w in zip(first, last, diag, rng.integers(1, 12, n), strict=True)
    ]
    return pa.record_batch(
        {
            "note_id": pa.array(ids, pa.int64()),
            "patient_id": pa.array([f"P{p:06d}" for p in patient]),
            "region": pa.array(rng.choice(_REGIONS, n, p=[0.5, 0.35, 0.15]).tolist()),
            "age": pa.array(rng.integers(2, 95, n), pa.int64()),
            "diagnosis_code": pa.array(diag.tolist()),
            "note": pa.array(notes),
            "consent_research": pa.array((rng.random(n) < 0.7).tolist(), pa.bool_()),
            "admitted": pa.array(admitted, pa.date32()),
        }
    )


_COUNTRIES = np.array(["DE", "FR", "US", "CA", "JP", "IN", "BR", "NL"])
_MESSAGES = np.array(
    [
        "How do I reset my password?",
        "The export to CSV fails with a timeout.",
        "Can you summarise this article for me?",
        "Write a haiku about autumn rain.",
        "My order never arrived, please help.",
        "Translate 'good morning' into Japanese.",
        "What is the capital of Australia?",
        "Explain gradient descent like I'm five.",
    ]
)


def _chat_logs(rng: np.random.Generator, start: int, n: int) -> pa.RecordBatch:
    user = rng.integers(0, 15_000, n)
    base = dt.datetime(2024, 1, 1)
    sent = [base + dt.timedelta(seconds=int(s)) for s in rng.integers(0, 600 * 86400, n)]
    return pa.record_batch(
        {
            "message_id": pa.array(np.arange(start, start + n), pa.int64()),
            "user_id": pa.array([f"U{u:06d}" for u in user]),
            "email": pa.array([f"user{u}@example.{'org' if u % 3 else 'com'}" for u in user]),
            "country": pa.array(rng.choice(_COUNTRIES, n).tolist()),
            "message": pa.array(rng.choice(_MESSAGES, n).tolist()),
            "consent_training": pa.array((rng.random(n) < 0.6).tolist(), pa.bool_()),
            "sent_at": pa.array(sent, pa.timestamp("us")),
            "toxicity": pa.array(np.round(rng.beta(1, 12, n), 4), pa.float64()),
        }
    )


_LICENCES = np.array(
    ["mit", "apache-2.0", "bsd-3-clause", "gpl-3.0", "cc-by-nc-4.0", "proprietary"]
)
_LANGS = np.array(["python", "rust", "go", "typescript", "c"])
_SNIPPETS = {
    "python": "def add(a, b):\n    return a + b\n",
    "rust": "fn add(a: i32, b: i32) -> i32 { a + b }\n",
    "go": "func add(a, b int) int { return a + b }\n",
    "typescript": "export const add = (a: number, b: number) => a + b;\n",
    "c": "int add(int a, int b) { return a + b; }\n",
}


def _code_corpus(rng: np.random.Generator, start: int, n: int) -> pa.RecordBatch:
    author = rng.integers(0, 5_000, n)
    lang = rng.choice(_LANGS, n)
    return pa.record_batch(
        {
            "file_id": pa.array(np.arange(start, start + n), pa.int64()),
            "author_id": pa.array([f"A{a:05d}" for a in author]),
            "author_email": pa.array([f"dev{a}@users.example.net" for a in author]),
            "repo": pa.array([f"org{a % 300}/project{a % 17}" for a in author]),
            "path": pa.array([f"src/module_{i % 97}.{lg[:2]}" for i, lg in enumerate(lang)]),
            "licence": pa.array(
                rng.choice(_LICENCES, n, p=[0.35, 0.25, 0.1, 0.15, 0.1, 0.05]).tolist()
            ),
            "language": pa.array(lang.tolist()),
            "content": pa.array([_SNIPPETS[lg] for lg in lang]),
            "stars": pa.array(rng.zipf(2.0, n).clip(0, 100_000), pa.int64()),
        }
    )


DEMO_DATASETS: tuple[DemoDataset, ...] = (
    DemoDataset(
        name="patient_notes",
        description="Clinical notes with diagnoses; health data under GDPR art. 9 and HIPAA.",
        subject_column="patient_id",
        rows=50_000,
        tags={
            "patient_id": ["pii.id"],
            "age": ["pii.quasi"],
            "diagnosis_code": ["health"],
            "note": ["health", "pii.freetext"],
            "admitted": ["pii.date"],
        },
        make_batch=_patient_notes,
    ),
    DemoDataset(
        name="chat_logs",
        description="Assistant chat messages with user emails and training-consent flags.",
        subject_column="user_id",
        rows=80_000,
        tags={
            "user_id": ["pii.id"],
            "email": ["pii.email"],
            "message": ["pii.freetext"],
            "sent_at": ["pii.date"],
        },
        make_batch=_chat_logs,
    ),
    DemoDataset(
        name="code_corpus",
        description="Source files with per-file licences, for code-model pretraining.",
        subject_column="author_id",
        rows=30_000,
        tags={
            "author_id": ["pii.id"],
            "author_email": ["pii.email"],
            "licence": ["licence"],
        },
        make_batch=_code_corpus,
    ),
)
