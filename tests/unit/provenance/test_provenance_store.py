from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from pyroaring import BitMap

from govern.errors import BadRequest, Conflict, Forbidden, NotFound
from govern.gateway import Gateway
from govern.provenance import ProvenanceStore
from govern.store import Database
from tests.conftest import raw_store
from tests.unit.flight.serving import load_small_demo


@pytest.fixture
def raw(gateway: Gateway) -> Iterator[Database]:
    """The gateway's store, unguarded: the provenance store on its own, below the read path
    (which opens runs inside the read's logged transaction)."""
    load_small_demo(gateway)
    db = raw_store(gateway)
    yield db
    db.dispose()


@pytest.fixture
def store(raw: Database) -> ProvenanceStore:
    return ProvenanceStore(raw)


def test_a_run_belongs_to_one_principal_and_one_purpose(store: ProvenanceStore) -> None:
    run = store.open_run("run-1", "demo-trainer", "training")
    assert (run.id, run.principal_id, run.purpose) == ("run-1", "demo-trainer", "training")
    assert store.open_run("run-1", "demo-trainer", "training").created_at == run.created_at
    with pytest.raises(Forbidden):
        store.open_run("run-1", "someone-else", "training")
    with pytest.raises(Conflict):
        store.open_run("run-1", "demo-trainer", "evaluation")
    for bad in ("", "-leading", "has space", "x" * 201, "semi;colon"):
        with pytest.raises(BadRequest):
            store.open_run(bad, "demo-trainer", "training")
    with pytest.raises(NotFound):
        store.get_run("no-such-run")


def test_reads_of_a_run_merge_per_version(gateway: Gateway, store: ProvenanceStore) -> None:
    notes = gateway.queries.dataset("patient_notes")
    chat = gateway.queries.dataset("chat_logs")
    store.open_run("r", "demo-trainer", "training")
    assert store.merge("r", notes.version_id, BitMap([1, 2, 3])) == 3
    assert store.merge("r", notes.version_id, BitMap([3, 4])) == 4
    assert store.merge("r", notes.version_id, BitMap([1])) == 4  # nothing new, nothing written
    assert store.merge("r", chat.version_id, BitMap(range(100))) == 100
    assert store.row_ids("r", notes.version_id) == BitMap([1, 2, 3, 4])
    reads = {(r.dataset, r.version): r.row_count for r in store.reads("r")}
    assert reads == {("chat_logs", 1): 100, ("patient_notes", 1): 4}
    assert store.row_ids("r", 10_000) == BitMap()


def test_concurrent_merges_into_one_run_lose_nothing(
    gateway: Gateway, raw: Database, store: ProvenanceStore
) -> None:
    version_id = gateway.queries.dataset("chat_logs").version_id
    store.open_run("parallel", "demo-trainer", "training")
    parts = [BitMap(range(i, 20_000, 8)) for i in range(8)]
    errors: list[BaseException] = []

    def merge(part: BitMap) -> None:
        try:
            # Separate store objects, as separate reads have.
            for chunk in (part & BitMap(range(0, 10_000)), part & BitMap(range(10_000, 20_000))):
                ProvenanceStore(raw).merge("parallel", version_id, chunk)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=merge, args=(p,)) for p in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.row_ids("parallel", version_id) == BitMap(range(20_000))
