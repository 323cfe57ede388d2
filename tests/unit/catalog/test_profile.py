"""A version's profile from its own Parquet file: counts, and the values of place columns."""

from __future__ import annotations

import pyarrow as pa

from govern.catalog.profile import VersionProfiler, is_place_column
from govern.gateway import Gateway
from tests.conftest import TEST_ACTOR


def customers() -> pa.Table:
    # 7 rows of 4 customers; one without a country, one country only tagged as a place.
    return pa.table(
        {
            "customer_id": ["c1", "c1", "c2", "c3", "c3", "c3", "c4"],
            "country_code": ["DE", "DE", "US", None, "FR", "FR", "JP"],
            "home": ["Oslo", "Oslo", "Austin", "Lyon", "Lyon", "Lyon", "Kyoto"],
            "note": ["a", "b", "c", "d", "e", "f", "g"],
        }
    )


def test_counts_and_place_values_come_from_the_version(sqlite_gateway: Gateway) -> None:
    g = sqlite_gateway
    g.commands.register_dataset(
        "customers", customers(), "customer_id", TEST_ACTOR, tags={"home": ["geo.region"]}
    )
    p = VersionProfiler().profile(g.queries.dataset("customers"))
    assert p is not None
    assert (p.dataset, p.version, p.rows, p.subjects) == ("customers", 1, 7, 4)
    assert p.subject_column == "customer_id"
    assert p.places == {"country_code": ("DE", "FR", "JP", "US"),
                        "home": ("Austin", "Kyoto", "Lyon", "Oslo")}  # fmt: skip
    assert not p.truncated


def test_many_distinct_places_are_capped_and_marked_truncated(sqlite_gateway: Gateway) -> None:
    g = sqlite_gateway
    t = pa.table({"uid": [f"u{i}" for i in range(50)], "region": [f"r{i:02}" for i in range(50)]})
    g.commands.register_dataset("regions", t, "uid", TEST_ACTOR)
    p = VersionProfiler(max_values=10).profile(g.queries.dataset("regions"))
    assert p is not None and len(p.places["region"]) == 10 and p.truncated == {"region"}


def test_a_version_whose_file_is_gone_has_no_profile(sqlite_gateway: Gateway) -> None:
    g = sqlite_gateway
    g.commands.register_dataset("customers", customers(), "customer_id", TEST_ACTOR)
    info = g.queries.dataset("customers")
    profiler = VersionProfiler()
    info.path.rename(info.path.with_suffix(".moved"))
    assert profiler.profile(info) is None


def test_place_columns_are_found_by_the_words_of_their_name_or_a_geo_tag() -> None:
    for name in ("country", "Country_Code", "home_region", "nationality", "residence"):
        assert is_place_column(name), name
    for name in ("countrysong", "regional_sales", "email", "station"):
        assert not is_place_column(name), name
    assert is_place_column("home", ("geo.country",))
