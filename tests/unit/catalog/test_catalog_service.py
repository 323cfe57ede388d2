"""The Catalog part on its own: staging and committing versions on an unguarded store, in a
transaction the test opens itself (the command layer does that for the edges)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from sqlalchemy import func, select

from govern.catalog import ROW_ID, Catalog, DatasetInfo
from govern.catalog.service import Source
from govern.errors import BadRequest, Conflict, DatasetNotFound, VersionNotFound
from govern.gateway import Gateway
from govern.settings import Settings
from govern.store import Database
from govern.store.migrate import upgrade
from govern.store.models import DatasetVersion
from tests.conftest import TEST_ACTOR


def people(n: int = 5) -> pa.Table:
    return pa.table(
        {
            "uid": [f"u{i}" for i in range(n)],
            "email": [f"u{i}@example.com" for i in range(n)],
            "age": pa.array(range(20, 20 + n), pa.int32()),
        }
    )


@pytest.fixture
def cat(sqlite_settings: Settings) -> Iterator[Catalog]:
    url = sqlite_settings.resolved_database_url
    upgrade(url)
    db = Database(url)
    yield Catalog(db, sqlite_settings.datasets_dir)
    db.dispose()


def register(
    cat: Catalog,
    name: str,
    source: Source,
    subject_column: str,
    *,
    description: str = "",
    tags: Mapping[str, Sequence[str]] | None = None,
) -> DatasetInfo:
    """Stage, then commit in one transaction; undo the rename if the transaction fails."""
    staged = cat.stage_version(name, source, subject_column, description=description, tags=tags)
    undo: list[Callable[[], object]] = []
    try:
        try:
            with cat.db.transaction("command"):
                return cat.commit_version(staged, on_rollback=undo.append)
        except BaseException:
            for step in reversed(undo):
                step()
            raise
    finally:
        staged.discard()


def version_rows(cat: Catalog) -> int:
    with cat.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(DatasetVersion)) or 0)


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_registering_twice_makes_two_immutable_versions_with_row_ids(cat: Catalog) -> None:
    v1 = register(cat, "people", people(5), "uid", tags={"email": ["pii.email"]})
    v2 = register(cat, "people", people(3), "uid")
    assert (v1.version, v2.version) == (1, 2)
    assert cat.get("people").version == 2
    assert cat.get("people", 1).row_count == 5
    assert v1.path != v2.path and v1.path.exists()
    # Types are normalised and tags carry over to the new version.
    assert v2.column_types == {"uid": "VARCHAR", "email": "VARCHAR", "age": "BIGINT"}
    assert v2.column("email").tags == ("pii.email",)
    ids = duckdb.sql(f"SELECT {ROW_ID} FROM read_parquet('{v1.path}') ORDER BY 1").fetchall()
    assert [r[0] for r in ids] == [0, 1, 2, 3, 4]
    # Only the two committed files are left: no staged upload survives.
    assert files_in(cat.datasets_dir / "people") == ["v1.parquet", "v2.parquet"]


@pytest.mark.parametrize("name", ["../etc", "People", "a b", "x" * 64, "", "1abc", "a;drop"])
def test_hostile_dataset_names_are_refused(cat: Catalog, name: str) -> None:
    with pytest.raises(BadRequest):
        register(cat, name, people(), "uid")
    assert version_rows(cat) == 0


def test_a_missing_subject_column_is_refused_and_nothing_is_written(cat: Catalog) -> None:
    with pytest.raises(BadRequest, match="subject column"):
        register(cat, "people", people(), "user_id")
    with pytest.raises(DatasetNotFound):
        cat.get("people")
    assert not (cat.datasets_dir / "people").exists()


def test_column_named_dataset_is_refused(cat: Catalog) -> None:
    t = people().append_column("dataset", pa.array(["x"] * 5))
    with pytest.raises(BadRequest, match="column names"):
        register(cat, "people", t, "uid")


def test_data_that_breaks_its_types_midway_leaves_no_half_version(cat: Catalog) -> None:
    good = pa.record_batch({"uid": ["a"], "n": pa.array([1], pa.int64())})
    bad = pa.record_batch({"uid": ["b"], "n": pa.array(["not a number"])})
    with pytest.raises(BadRequest):
        register(cat, "mixed", iter([good, bad]), "uid")
    assert version_rows(cat) == 0
    # No file is left, nor the folder of a dataset that never got a version.
    assert not (cat.datasets_dir / "mixed").exists()


def test_a_staged_version_is_invisible_until_committed_and_discard_removes_it(
    cat: Catalog,
) -> None:
    staged = cat.stage_version("people", people(), "uid")
    assert staged.tmp.exists() and staged.rows == 5
    assert staged.tmp.parent == cat.datasets_dir / "people"
    assert version_rows(cat) == 0
    with pytest.raises(DatasetNotFound):
        cat.get("people")
    staged.discard()
    assert not staged.tmp.exists()
    assert not (cat.datasets_dir / "people").exists()  # the dataset never got a version
    staged.discard()  # a second discard is harmless


def test_a_failed_transaction_moves_the_file_back_and_registers_nothing(cat: Catalog) -> None:
    staged = cat.stage_version("people", people(), "uid")
    undo: list[Callable[[], object]] = []

    def commit_then_fail() -> None:
        with cat.db.transaction("command"):
            info = cat.commit_version(staged, on_rollback=undo.append)
            # Inside the transaction the version is in place, under its final name.
            assert info.path.exists() and not staged.tmp.exists()
            raise RuntimeError("event could not be written")

    with pytest.raises(RuntimeError, match="event could not be written"):
        commit_then_fail()
    assert len(undo) == 1
    for step in undo:
        step()
    # The file is back under its temporary name, and no row names a version.
    assert staged.tmp.exists()
    assert not (cat.datasets_dir / "people" / "v1.parquet").exists()
    assert version_rows(cat) == 0
    with pytest.raises(DatasetNotFound):
        cat.get("people")
    staged.discard()
    assert not (cat.datasets_dir / "people").exists()
    # The version number was not used up: the next commit is version 1.
    assert register(cat, "people", people(), "uid").version == 1


def test_a_new_version_must_keep_the_subject_column(cat: Catalog) -> None:
    register(cat, "people", people(), "uid")
    with pytest.raises(Conflict):
        register(cat, "people", people(), "email")
    assert [v.version for v in cat.versions("people")] == [1]
    assert files_in(cat.datasets_dir / "people") == ["v1.parquet"]


def test_unknown_versions_are_not_found(cat: Catalog) -> None:
    register(cat, "people", people(), "uid")
    with pytest.raises(VersionNotFound):
        cat.get("people", 7)


def test_tags_can_be_replaced_by_a_steward(cat: Catalog) -> None:
    register(cat, "people", people(), "uid")
    info = cat.set_tags("people", "age", ["pii.quasi", "pii.quasi"])
    assert info.column("age").tags == ("pii.quasi",)
    with pytest.raises(BadRequest):
        cat.set_tags("people", "age", ["Bad Tag"])


def test_the_register_command_stores_the_version_with_its_event(
    sqlite_gateway: Gateway,
) -> None:
    g = sqlite_gateway
    info = g.commands.register_dataset(
        "people", people(), "uid", TEST_ACTOR, description="staff", tags={"email": ["pii.email"]}
    )
    assert (info.version, info.state, info.description) == (1, "active", "staff")
    assert g.queries.dataset("people").column("email").tags == ("pii.email",)
    [entry] = [
        e.entry for e in g.queries.ledger_entries(g.operator, kind="dataset.version", limit=1000)
    ]
    assert entry["actor"] == TEST_ACTOR
    assert entry["object"] == "dataset:people/v1"
    assert entry["data"]["rows"] == 5 and entry["data"]["source"] == "registered"
    # A refused version leaves neither a row, a file, nor an event.
    with pytest.raises(Conflict):
        g.commands.register_dataset("people", people(), "email", TEST_ACTOR)
    assert [v.version for v in g.queries.versions("people")] == [1]
    assert files_in(g.settings.datasets_dir / "people") == ["v1.parquet"]
    assert len(g.queries.ledger_entries(g.operator, kind="dataset.version", limit=1000)) == 1


def test_a_sweep_removes_what_a_killed_writer_left_and_keeps_versions_and_live_stages(
    cat: Catalog,
) -> None:
    register(cat, "people", people(), "email")
    folder = cat.datasets_dir / "people"
    # Left by a killed process: a staged file, a rewrite's temporary file, and a version
    # file renamed into place whose transaction never committed (no row names it).
    for name in (".upload-dead.parquet", ".rewrite-dead.parquet", "v2.parquet"):
        (folder / name).write_bytes(b"half")
    live = cat.stage_version("people", people(3), "email")  # another process, still at it
    try:
        assert cat.sweep() == 3
        assert files_in(folder) == sorted([live.tmp.name, "v1.parquet"])
        assert cat.get("people").path.is_file()
    finally:
        live.discard()
