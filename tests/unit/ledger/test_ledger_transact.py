"""``Ledger.transact``: a change and its events commit together or not at all, over a real
SQLite store guarded as a Gateway opens it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from govern.auth import PrincipalService
from govern.errors import GovernError, PrincipalNotFound, UnloggedWrite, ValidationError
from govern.events import DecisionMade, PrincipalPut
from govern.ledger.canonical import parse_leaf
from govern.ledger.service import Ledger, LedgerUnavailable, Tx
from govern.ledger.verify import verify_bundle
from govern.store import Database
from govern.store.migrate import upgrade
from govern.store.models import LedgerEntry, Principal


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Database, Ledger]]:
    url = f"sqlite:///{tmp_path / 'govern.db'}"
    upgrade(url)
    db = Database(url, guarded=True)
    ledger = Ledger(db, tmp_path / "ledger.pem", "test.example/log")
    yield db, ledger
    ledger.close()
    db.dispose()


def _put(principals: PrincipalService, pid: str) -> PrincipalPut:
    record = principals.upsert(pid, ["trainer"], {"region": "eu"})
    return PrincipalPut(id=pid, roles=record.roles, attributes={"region": "eu"}, created=True)


def _count(db: Database, table: type) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(table)) or 0)


def test_a_change_and_its_event_commit_together(store: tuple[Database, Ledger]) -> None:
    db, ledger = store
    principals = PrincipalService(db)

    def change(tx: Tx) -> str:
        tx.emit(_put(principals, "alice"))
        return "done"

    committed = ledger.transact("admin-1", change)
    assert (committed.value, committed.first_index, committed.count) == ("done", 0, 1)
    assert principals.get("alice").roles == ("trainer",)
    entry, _ = ledger.entry(0)
    assert (entry["kind"], entry["actor"], entry["object"]) == (
        "principal.put",
        "admin-1",
        "principal:alice",
    )
    assert entry["data"] == {
        "id": "alice",
        "roles": ["trainer"],
        "attributes": {"region": "eu"},
        "created": True,
    }
    ledger.checkpoint()
    assert verify_bundle(ledger.bundle()).entries == 1


def test_a_change_that_fails_leaves_neither_the_change_nor_an_event(
    store: tuple[Database, Ledger],
) -> None:
    db, ledger = store
    principals = PrincipalService(db)

    def change(tx: Tx) -> None:
        tx.emit(_put(principals, "bob"))
        raise ValidationError("refused after the write")

    with pytest.raises(ValidationError):
        ledger.transact("admin-1", change)
    with pytest.raises(PrincipalNotFound):
        principals.get("bob")
    assert ledger.refresh() == 0


def test_a_change_whose_event_cannot_be_written_does_not_happen(
    store: tuple[Database, Ledger],
) -> None:
    db, ledger = store
    principals = PrincipalService(db)
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER log_down BEFORE INSERT ON ledger_entries "
                "BEGIN SELECT RAISE(ABORT, 'down'); END"
            )
        )
    with pytest.raises(LedgerUnavailable):
        ledger.transact("admin-1", lambda tx: tx.emit(_put(principals, "carol")))
    assert _count(db, Principal) == 0
    assert _count(db, LedgerEntry) == 0
    with db.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER log_down"))
    # The tree was not left ahead of the store: the next change lands at index 0.
    assert (
        ledger.transact("admin-1", lambda tx: tx.emit(_put(principals, "carol"))).first_index == 0
    )


def test_a_change_without_an_event_is_refused(store: tuple[Database, Ledger]) -> None:
    db, ledger = store
    principals = PrincipalService(db)
    with pytest.raises(GovernError, match="at least one event"):
        ledger.transact("admin-1", lambda tx: principals.upsert("dave", ["trainer"]))
    with pytest.raises(PrincipalNotFound):
        principals.get("dave")


def test_no_change_rolls_back_and_logs_nothing(store: tuple[Database, Ledger]) -> None:
    db, ledger = store
    principals = PrincipalService(db)

    def change(tx: Tx) -> int:
        principals.upsert("erin", ["trainer"])
        tx.no_change()
        return 7

    committed = ledger.transact("admin-1", change)
    assert (committed.value, committed.count) == (7, 0)
    with pytest.raises(PrincipalNotFound):
        principals.get("erin")
    assert ledger.refresh() == 0


def test_changes_do_not_nest_and_appends_do_not_hide_inside_them(
    store: tuple[Database, Ledger],
) -> None:
    db, ledger = store
    principals = PrincipalService(db)

    def nested(tx: Tx) -> None:
        tx.emit(_put(principals, "frank"))
        ledger.transact("admin-1", lambda inner: None)

    with pytest.raises(GovernError, match="do not nest"):
        ledger.transact("admin-1", nested)

    def appends(tx: Tx) -> None:
        tx.emit(_put(principals, "frank"))
        ledger.append(_decision(), "someone")

    with pytest.raises(GovernError, match="append inside a change"):
        ledger.transact("admin-1", appends)
    assert ledger.refresh() == 0


def test_rollback_steps_undo_work_outside_the_store(
    store: tuple[Database, Ledger], tmp_path: Path
) -> None:
    db, ledger = store
    principals = PrincipalService(db)
    staged, final = tmp_path / "staged", tmp_path / "final"
    staged.write_text("x")

    def change(tx: Tx) -> None:
        staged.rename(final)
        tx.on_rollback(lambda: final.rename(staged))
        tx.emit(_put(principals, "gina"))
        raise ValidationError("no")

    with pytest.raises(ValidationError):
        ledger.transact("admin-1", change)
    assert staged.exists() and not final.exists()


def test_the_guarded_store_refuses_a_write_outside_any_change(
    store: tuple[Database, Ledger],
) -> None:
    db, _ = store
    with pytest.raises(UnloggedWrite):
        PrincipalService(db).upsert("hugo", ["trainer"])
    assert _count(db, Principal) == 0


def test_decisions_and_changes_appended_concurrently_make_one_verifiable_log(
    store: tuple[Database, Ledger],
) -> None:
    db, ledger = store
    principals = PrincipalService(db)
    errors: list[BaseException] = []

    def decide() -> None:
        try:
            for _ in range(25):
                ledger.append(_decision(), "trainer-1")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def change(n: int) -> None:
        try:
            ledger.transact("admin-1", lambda tx: tx.emit(_put(principals, f"p{n}")))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=decide) for _ in range(4)]
    threads += [threading.Thread(target=change, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    size = ledger.refresh()
    assert size == 4 * 25 + 10
    kinds = [parse_leaf(leaf)["kind"] for _, leaf in ledger.leaves(0, size)]
    assert kinds.count("decision") == 100 and kinds.count("principal.put") == 10
    assert _count(db, Principal) == 10
    ledger.checkpoint()
    assert verify_bundle(ledger.bundle()).entries == size


def _decision() -> DecisionMade:
    return DecisionMade(
        subject="trainer-1",
        dataset="patient_notes",
        dataset_version=1,
        purpose="training",
        decision="deny",
        row_filter=None,
        row_filter_ast=None,
        columns={},
        obligations=(),
        policy_version=None,
        reasons=("no rule",),
    )
