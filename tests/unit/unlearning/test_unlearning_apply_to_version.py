"""Erasure requests made before a dataset version existed are applied to it when it arrives."""

from __future__ import annotations

import pyarrow as pa
from pyroaring import BitMap

from govern.gateway import Gateway


def people(subjects: list[str]) -> pa.Table:
    return pa.table({"sid": subjects, "value": list(range(len(subjects)))})


def test_a_new_version_gets_the_exclusions_of_every_earlier_request(
    sqlite_gateway: Gateway,
) -> None:
    g = sqlite_gateway
    g.catalog.register_version("alpha", people(["s1", "s2", "s1"]), "sid")
    g.catalog.register_version("beta", people(["s1", "s3"]), "sid")
    everywhere = g.request_erasure("s1", None, "gdpr-art17", "officer")
    only_beta = g.request_erasure("s3", ["beta"], "gdpr-art17", "officer")
    # Nobody called s9 when this was asked; the subject's rows arrive later.
    early = g.request_erasure("s9", None, "ccpa", "officer")
    assert (everywhere.excluded_rows, early.state) == (3, "completed")

    v2 = g.catalog.register_version("alpha", people(["s3", "s1", "s9", "s1", "s2"]), "sid")
    assert g.erasure.excluded(v2.version_id) == frozenset()  # not applied yet
    assert g.erasure.apply_to_version(v2) == 3
    # s1 everywhere and s9 apply; s3's request covers beta only.
    assert g.erasure.excluded(v2.version_id) == frozenset({1, 2, 3})
    assert g.erasure.get(everywhere.id).excluded_rows == 5
    assert g.erasure.get(early.id).excluded_rows == 1
    assert g.erasure.get(only_beta.id).excluded_rows == 1

    # Applying again changes nothing.
    assert g.erasure.apply_to_version(v2) == 0
    assert g.erasure.get(everywhere.id).excluded_rows == 5

    beta2 = g.catalog.register_version("beta", people(["s3", "s3", "s4"]), "sid")
    assert g.erasure.apply_to_version(beta2) == 2
    assert g.erasure.excluded(beta2.version_id) == frozenset({0, 1})


def test_numeric_subject_columns_match_as_text(sqlite_gateway: Gateway) -> None:
    g = sqlite_gateway
    g.catalog.register_version("nums", pa.table({"uid": [7, 8]}), "uid")
    g.request_erasure("7", None, "gdpr-art17", "officer")
    v2 = g.catalog.register_version("nums", pa.table({"uid": [8, 7, 7, 9]}), "uid")
    assert g.erasure.apply_to_version(v2) == 2
    assert BitMap(g.erasure.excluded(v2.version_id)) == BitMap([1, 2])


def test_a_version_with_no_requests_is_left_alone(sqlite_gateway: Gateway) -> None:
    v1 = sqlite_gateway.catalog.register_version("alpha", people(["s1"]), "sid")
    assert sqlite_gateway.erasure.apply_to_version(v1) == 0
    assert sqlite_gateway.erasure.excluded(v1.version_id) == frozenset()
