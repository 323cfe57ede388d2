"""Generated data with planted PII and planted quality defects, and the truth about each."""

from __future__ import annotations

import datetime as dt
import random

import pyarrow as pa

FIRST = ["Ana", "Ben", "Chloe", "Dmitri", "Elif", "Farah", "Goran", "Hana", "Ivan", "Jia"]
LAST = ["Novak", "Smith", "Garcia", "Kowalski", "Tanaka", "Okafor", "Larsen", "Rossi"]
CONDITIONS = ["asthma", "type 2 diabetes", "hypertension", "depression", "a urinary infection"]
ICD = ["E11.9", "I10", "J45.909", "F32.A", "M54.5", "K21.9", "C50.911", "N39.0"]
PRODUCTS = ["SKU-1042-B", "SKU-2201-A", "SKU-0077-C", "SKU-9000-X"]


def _ssn(r: random.Random) -> str:
    # Valid-looking SSNs: area 100-665, group 10-99, serial 1000-9999 (no 000/666/9xx areas).
    return f"{r.randint(100, 665)}-{r.randint(10, 99)}-{r.randint(1000, 9999)}"


def _card(r: random.Random) -> str:
    # Luhn-valid 16-digit Visa numbers.
    digits = [4] + [r.randint(0, 9) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        v = d * 2 if i % 2 == 0 else d
        total += v - 9 if v > 9 else v
    digits.append((10 - total % 10) % 10)
    s = "".join(map(str, digits))
    return " ".join(s[i : i + 4] for i in range(0, 16, 4))


def people(n: int = 400, seed: int = 1) -> pa.Table:
    """A table whose columns carry planted PII (and decoys that carry none)."""
    r = random.Random(seed)
    rows = range(n)
    return pa.table(
        {
            "record_id": pa.array(list(rows), pa.int64()),
            "customer_id": [f"C{i:06d}" for i in rows],
            "contact": [f"{r.choice(FIRST).lower()}.{i}@example.org" for i in rows],
            "reach_at": [f"+1 415-555-{r.randint(0, 9999):04d}" for _ in rows],
            "tax_number": [_ssn(r) for _ in rows],
            "payment": [_card(r) for _ in rows],
            "last_login_from": [
                f"{r.randint(11, 220)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
                for _ in rows
            ],
            "full_name": [f"{r.choice(FIRST)} {r.choice(LAST)}" for _ in rows],
            "age": pa.array([r.randint(18, 90) for _ in rows], pa.int64()),
            "visit_code": [r.choice(ICD) for _ in rows],
            "comments": [
                (
                    f"Patient says {r.choice(CONDITIONS)} got worse; call back on "
                    f"+1 212-555-{r.randint(0, 9999):04d} or mail them."
                    if i % 4 == 0
                    else f"Follow-up about {r.choice(CONDITIONS)} went fine, no further action."
                )
                for i in rows
            ],
            "signup_day": pa.array(
                [dt.date(2024, 1, 1) + dt.timedelta(days=r.randint(0, 300)) for _ in rows],
                pa.date32(),
            ),
            # Decoys: nothing personal here.
            "product": [r.choice(PRODUCTS) for _ in rows],
            "amount": pa.array([round(r.uniform(1, 500), 2) for _ in rows], pa.float64()),
            "homepage": [f"https://shop{r.randint(1, 9)}.example.com/items" for _ in rows],
            "status": [r.choice(["open", "closed", "pending"]) for _ in rows],
            "summary": [
                f"Order {i} shipped in {r.randint(1, 5)} boxes via the usual carrier route."
                for i in rows
            ],
        }
    )


# The tags that are right for people(): (column, tag). Everything else proposed is a false
# positive; everything here not proposed is a miss.
PEOPLE_TRUTH: frozenset[tuple[str, str]] = frozenset(
    {
        ("customer_id", "pii.id"),
        ("contact", "pii.email"),
        ("reach_at", "pii.phone"),
        ("tax_number", "pii.national_id"),
        ("payment", "pii.financial"),
        ("last_login_from", "pii.ip"),
        ("full_name", "pii.name"),
        ("age", "pii.quasi"),
        ("visit_code", "health"),
        ("comments", "health"),
        ("comments", "pii.freetext"),
        ("signup_day", "pii.date"),
    }
)


def measurements(n: int = 1000, seed: int = 2) -> pa.Table:
    """A clean table for quality tests: unique ids, a subject column, bounded numbers."""
    r = random.Random(seed)
    return pa.table(
        {
            "reading_id": pa.array(list(range(n)), pa.int64()),
            "patient_id": [f"P{r.randint(0, 200):04d}" for _ in range(n)],
            "heart_rate": pa.array([r.randint(50, 120) for _ in range(n)], pa.int64()),
            "temperature": pa.array([round(r.uniform(35.5, 39.5), 1) for _ in range(n)]),
            "ward": [r.choice(["a", "b", "c"]) for _ in range(n)],
        }
    )


def with_column(table: pa.Table, name: str, values: pa.Array | list[object]) -> pa.Table:
    i = table.schema.get_field_index(name)
    arr = values if isinstance(values, pa.Array) else pa.array(values)
    return table.set_column(i, name, arr)
