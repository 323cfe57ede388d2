from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest
from sqlalchemy import func, select

from govern.catalog import ROW_ID
from govern.errors import BadRequest, Conflict, DatasetNotFound, VersionNotFound
from govern.gateway import Gateway
from govern.store.models import DatasetVersion


def people(n: int = 5) -> pa.Table:
    return pa.table(
        {
            "uid": [f"u{i}" for i in range(n)],
            "email": [f"u{i}@example.com" for i in range(n)],
            "age": pa.array(range(20, 20 + n), pa.int32()),
        }
    )


def test_registering_twice_makes_two_immutable_versions_with_row_ids(
    sqlite_gateway: Gateway,
) -> None:
    cat = sqlite_gateway.catalog
    v1 = cat.register_version("people", people(5), "uid", tags={"email": ["pii.email"]})
    v2 = cat.register_version("people", people(3), "uid")
    assert (v1.version, v2.version) == (1, 2)
    assert cat.get("people").version == 2
    assert cat.get("people", 1).row_count == 5
    assert v1.path != v2.path and v1.path.exists()
    # Types are normalised and tags carry over to the new version.
    assert v2.column_types == {"uid": "VARCHAR", "email": "VARCHAR", "age": "BIGINT"}
    assert v2.column("email").tags == ("pii.email",)
    ids = duckdb.sql(f"SELECT {ROW_ID} FROM read_parquet('{v1.path}') ORDER BY 1").fetchall()
    assert [r[0] for r in ids] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("name", ["../etc", "People", "a b", "x" * 64, "", "1abc", "a;drop"])
def test_hostile_dataset_names_are_refused(sqlite_gateway: Gateway, name: str) -> None:
    with pytest.raises(BadRequest):
        sqlite_gateway.catalog.register_version(name, people(), "uid")


def test_a_missing_subject_column_is_refused_and_nothing_is_written(
    sqlite_gateway: Gateway,
) -> None:
    with pytest.raises(BadRequest, match="subject column"):
        sqlite_gateway.catalog.register_version("people", people(), "user_id")
    with pytest.raises(DatasetNotFound):
        sqlite_gateway.catalog.get("people")


def test_column_named_dataset_is_refused(sqlite_gateway: Gateway) -> None:
    t = people().append_column("dataset", pa.array(["x"] * 5))
    with pytest.raises(BadRequest, match="column names"):
        sqlite_gateway.catalog.register_version("people", t, "uid")


def test_data_that_breaks_its_types_midway_leaves_no_half_version(
    sqlite_gateway: Gateway,
) -> None:
    good = pa.record_batch({"uid": ["a"], "n": pa.array([1], pa.int64())})
    bad = pa.record_batch({"uid": ["b"], "n": pa.array(["not a number"])})
    with pytest.raises(BadRequest):
        sqlite_gateway.catalog.register_version("mixed", iter([good, bad]), "uid")
    with sqlite_gateway.db.session() as s:
        assert s.scalar(select(func.count()).select_from(DatasetVersion)) == 0
    folder = sqlite_gateway.settings.datasets_dir / "mixed"
    assert list(folder.iterdir()) == []


def test_a_new_version_must_keep_the_subject_column(sqlite_gateway: Gateway) -> None:
    sqlite_gateway.catalog.register_version("people", people(), "uid")
    with pytest.raises(Conflict):
        sqlite_gateway.catalog.register_version("people", people(), "email")


def test_unknown_versions_are_not_found(sqlite_gateway: Gateway) -> None:
    sqlite_gateway.catalog.register_version("people", people(), "uid")
    with pytest.raises(VersionNotFound):
        sqlite_gateway.catalog.get("people", 7)


def test_tags_can_be_replaced_by_a_steward(sqlite_gateway: Gateway) -> None:
    sqlite_gateway.catalog.register_version("people", people(), "uid")
    info = sqlite_gateway.catalog.set_tags("people", "age", ["pii.quasi", "pii.quasi"])
    assert info.column("age").tags == ("pii.quasi",)
    with pytest.raises(BadRequest):
        sqlite_gateway.catalog.set_tags("people", "age", ["Bad Tag"])
