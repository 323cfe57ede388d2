"""Erasure reports checked against an independent computation, over generated histories.

Each history is a few governed reads (principals, datasets, purposes, column subsets, shards,
chosen by a seeded generator) followed by erasure requests for subjects picked from the rows.
What the trainers actually received is kept on the client side; the subject of every row comes
from the Parquet file itself. From those alone the test computes each request's excluded rows,
its affected runs with how many of the subject's rows each received, every run's row counts
and the rows erased since it read them, and compares them with what the gateway reports.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

import duckdb
import pytest

from govern.auth import Caller
from govern.demo import load_demo
from govern.gateway import Gateway
from govern.gateway.reads import ReadRequest
from tests.conftest import TEST_ACTOR

READERS = [
    ("demo-trainer", "trainer", "training"),
    ("demo-steward", "steward", "audit"),
    ("demo-auditor", "auditor", "audit"),
]
DATASETS = ["patient_notes", "chat_logs", "code_corpus"]


@dataclass
class Received:
    run_id: str
    dataset: str
    version_id: int
    rows: set[int]


def owners(gateway: Gateway, dataset: str) -> dict[int, str]:
    info = gateway.queries.dataset(dataset)
    rows = duckdb.sql(
        f"SELECT _row_id, \"{info.subject_column}\" FROM read_parquet('{info.path}')"
    ).fetchall()
    return {int(r): str(s) for r, s in rows}


def caller(gateway: Gateway, pid: str, role: str) -> Caller:
    return gateway.decider.authenticate(gateway.commands.issue_token(pid, role, TEST_ACTOR).token)


def history(gateway: Gateway, rng: random.Random) -> list[Received]:
    out: list[Received] = []
    for n in range(rng.randint(3, 6)):
        pid, role, purpose = rng.choice(READERS)
        dataset = rng.choice(DATASETS)
        info = gateway.queries.dataset(dataset)
        columns = None
        if rng.random() < 0.4:
            names = [c.name for c in info.columns]
            columns = rng.sample(names, rng.randint(1, len(names)))
        shard = (rng.randrange(2), 2) if rng.random() < 0.5 else None
        # Some runs read twice (the same run id, another dataset or the same one again); a
        # run belongs to one principal and purpose.
        own = [r.run_id for r in out if r.run_id.startswith(f"run-{pid}-")]
        run_id = rng.choice(own) if own and rng.random() < 0.4 else f"run-{pid}-{n}"
        read = gateway.reads.open(
            caller(gateway, pid, role),
            ReadRequest(dataset, purpose, run_id=run_id, columns=columns, shard=shard),
        )
        table = read.to_reader().read_all()
        got = {int(i) for i in table.column("_row_id").to_pylist()}
        out.append(Received(run_id, dataset, info.version_id, got))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_erasure_reports_equal_an_independent_count_of_what_was_served(
    gateway: Gateway, seed: int
) -> None:
    rng = random.Random(seed)
    load_demo(gateway, scale=0.005)
    owner = {d: owners(gateway, d) for d in DATASETS}
    version = {d: gateway.queries.dataset(d).version_id for d in DATASETS}
    received = history(gateway, rng)

    # Subjects that some run received, and one that none did.
    served = sorted({(r.dataset, owner[r.dataset][i]) for r in received for i in r.rows})
    # First a subject some run received only part of (a shard, a row filter), if there is one.
    rows_of: dict[tuple[str, str], set[int]] = defaultdict(set)
    for d in DATASETS:
        for i, s in owner[d].items():
            rows_of[(d, s)].add(i)
    partial = sorted(
        {(r.dataset, owner[r.dataset][i]) for r in received for i in r.rows}
        - {
            (r.dataset, s)
            for r in received
            for s in {owner[r.dataset][i] for i in r.rows}
            if rows_of[(r.dataset, s)] <= r.rows
        }
    )
    picked = list(dict.fromkeys(partial[:1] + rng.sample(served, min(3, len(served)))))
    unserved = sorted(
        {(d, s) for d in DATASETS for s in owner[d].values()} - set(served), reverse=True
    )
    picked += unserved[:1]
    erased: dict[int, set[int]] = defaultdict(set)  # version id -> rows withdrawn
    for dataset, subject in picked:
        scope = [dataset] if rng.random() < 0.5 else None
        info = gateway.commands.request_erasure(subject, scope, "gdpr-art17", TEST_ACTOR)

        mine = {
            d: {i for i, s in owner[d].items() if s == subject}
            for d in DATASETS
            if scope is None or d in scope
        }
        assert info.excluded_rows == sum(len(rows) for rows in mine.values()), subject
        for d, rows in mine.items():
            erased[version[d]] |= rows

        # A run that read one dataset twice received the union of both reads.
        union: dict[tuple[str, str], set[int]] = defaultdict(set)
        for r in received:
            union[(r.run_id, r.dataset)] |= r.rows
        want: dict[str, dict[str, int]] = {
            run: {
                d: len(union[(run, d)] & mine[d])
                for (rid, d) in union
                if rid == run and d in mine and union[(run, d)] & mine[d]
            }
            for run in {rid for rid, _ in union}
        }
        want = {run: reads for run, reads in want.items() if reads}
        view = gateway.queries.erasure_request(info.id)
        got = {
            a.run.id: {rd.dataset: rd.rows for rd in a.reads if rd.rows} for a in view.affected_runs
        }
        assert {run: reads for run, reads in got.items() if reads} == want, subject

    # Every run: the rows it received per read, and how many of them erasure withdrew since.
    operator = gateway.operator
    union_by_run: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for r in received:
        union_by_run[r.run_id][r.dataset] |= r.rows
    assert {run.id for run in gateway.queries.runs()} == set(union_by_run)
    for run_id, reads in union_by_run.items():
        view_run = gateway.queries.run_view(operator, run_id)
        assert {r.dataset: r.row_count for r in view_run.reads} == {
            d: len(rows) for d, rows in reads.items()
        }, run_id
        assert {v: n for v, n in view_run.erased.items() if n} == {
            version[d]: len(rows & erased[version[d]])
            for d, rows in reads.items()
            if rows & erased[version[d]]
        }, run_id
