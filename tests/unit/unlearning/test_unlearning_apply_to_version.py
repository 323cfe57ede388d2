"""Erasure requests made before a dataset version existed are applied to it when it arrives."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
from pyroaring import BitMap

from govern.catalog import Catalog, DatasetInfo
from govern.events.commitment import Commitments
from govern.gateway import Gateway, ReadRequest
from govern.unlearning import ErasureService
from govern.unlearning.recipes import RecipeBody
from tests.conftest import TEST_ACTOR, raw_store
from tests.unit.flight.serving import demo_rules


def people(subjects: list[str]) -> pa.Table:
    return pa.table({"sid": subjects, "value": list(range(len(subjects)))})


def register(g: Gateway, name: str, table: pa.Table, subject_column: str) -> DatasetInfo:
    return g.commands.register_dataset(name, table, subject_column, TEST_ACTOR)


def version_entry(g: Gateway, info: DatasetInfo) -> dict[str, Any]:
    """The ``dataset.version`` entry that registered ``info``."""
    ref = f"dataset:{info.name}/v{info.version}"
    [view] = g.queries.ledger_entries(g.operator, kind="dataset.version", object_ref=ref)
    return view.entry


@contextmanager
def erasure_service(g: Gateway) -> Iterator[ErasureService]:
    """The erasure service on its own, over the gateway's store (the command that registers a
    version calls it inside its transaction; here it is called again, outside one)."""
    db = raw_store(g)
    try:
        commitments = Commitments(g.settings.commitment_key_bytes)
        yield ErasureService(db, Catalog(db, g.settings.datasets_dir), commitments)
    finally:
        db.dispose()


def test_a_new_version_gets_the_exclusions_of_every_earlier_request(
    sqlite_gateway: Gateway,
) -> None:
    g = sqlite_gateway
    register(g, "alpha", people(["s1", "s2", "s1"]), "sid")
    register(g, "beta", people(["s1", "s3"]), "sid")
    everywhere = g.commands.request_erasure("s1", None, "gdpr-art17", "officer")
    only_beta = g.commands.request_erasure("s3", ["beta"], "gdpr-art17", "officer")
    # Nobody called s9 when this was asked; the subject's rows arrive later.
    early = g.commands.request_erasure("s9", None, "ccpa", "officer")
    assert (everywhere.excluded_rows, early.state) == (3, "completed")
    # No run read these rows, so every request completed at once: only the commitments are
    # left to match later versions with.
    for request in (everywhere, only_beta, early):
        assert g.queries.erasure_request(request.id).info.subject_id is None

    v2 = register(g, "alpha", people(["s3", "s1", "s9", "s1", "s2"]), "sid")
    # Applied as the version is registered, before it can be served; s1 everywhere and s9
    # apply, s3's request covers beta only.
    assert g.queries.excluded_rows(v2.version_id) == frozenset({1, 2, 3})
    assert version_entry(g, v2)["data"]["erased_rows"] == 3
    assert g.queries.erasure_request(everywhere.id).info.excluded_rows == 5
    assert g.queries.erasure_request(early.id).info.excluded_rows == 1
    assert g.queries.erasure_request(only_beta.id).info.excluded_rows == 1

    # Applying again changes nothing.
    with erasure_service(g) as erasure:
        assert erasure.apply_to_version(v2) == 0
    assert g.queries.erasure_request(everywhere.id).info.excluded_rows == 5
    assert g.queries.excluded_rows(v2.version_id) == frozenset({1, 2, 3})

    beta2 = register(g, "beta", people(["s3", "s3", "s4"]), "sid")
    assert version_entry(g, beta2)["data"]["erased_rows"] == 2
    assert g.queries.excluded_rows(beta2.version_id) == frozenset({0, 1})
    assert g.queries.erasure_request(only_beta.id).info.excluded_rows == 3


def test_a_request_that_still_holds_its_subject_applies_to_new_versions(
    sqlite_gateway: Gateway,
) -> None:
    # A run read s2's rows and has a recipe, so the request waits for its retrain job and
    # keeps the subject id in clear: a new version is matched by value.
    g = sqlite_gateway
    register(g, "alpha", people(["s1", "s2", "s1"]), "sid")
    rule = ["p", "r.sub.role == 'trainer'", "alpha", "read", "training", "True", "allow"]
    g.commands.put_policy(None, demo_rules(rule), TEST_ACTOR)
    g.commands.put_principal("alice", ["trainer"], {}, TEST_ACTOR)
    alice = g.decider.authenticate(g.commands.issue_token("alice", "trainer", TEST_ACTOR).token)
    recipe = {
        "trainer": "examples/train_reference.py",
        "datasets": [{"name": "alpha", "version": 1}],
        "purpose": "training",
        "strategy": "full",
        "shards": 1,
        "epochs": 1,
        "seed": 1,
        "lr": 0.1,
        "output": "/models/m",
    }
    g.commands.put_recipe(alice, "m", RecipeBody.model_validate(recipe))
    read = g.reads.open(alice, ReadRequest("alpha", "training", run_id="m"))
    assert read.to_reader().read_all().num_rows == 3

    request = g.commands.request_erasure("s2", ["alpha"], "gdpr-art17", "officer")
    view = g.queries.erasure_request(request.id)
    assert [j.run_id for j in view.jobs] == ["m"]
    assert (view.info.state, view.info.subject_id) == ("excluded", "s2")

    v2 = register(g, "alpha", people(["s2", "s1", "s2"]), "sid")
    assert g.queries.excluded_rows(v2.version_id) == frozenset({0, 2})
    assert version_entry(g, v2)["data"]["erased_rows"] == 2
    assert g.queries.erasure_request(request.id).info.excluded_rows == 3
    with erasure_service(g) as erasure:
        assert erasure.apply_to_version(v2) == 0


def test_numeric_subject_columns_match_as_text(sqlite_gateway: Gateway) -> None:
    g = sqlite_gateway
    register(g, "nums", pa.table({"uid": [7, 8]}), "uid")
    g.commands.request_erasure("7", None, "gdpr-art17", "officer")
    v2 = register(g, "nums", pa.table({"uid": [8, 7, 7, 9]}), "uid")
    assert version_entry(g, v2)["data"]["erased_rows"] == 2
    assert BitMap(g.queries.excluded_rows(v2.version_id)) == BitMap([1, 2])


def test_a_version_with_no_requests_is_left_alone(sqlite_gateway: Gateway) -> None:
    v1 = register(sqlite_gateway, "alpha", people(["s1"]), "sid")
    assert version_entry(sqlite_gateway, v1)["data"]["erased_rows"] == 0
    with erasure_service(sqlite_gateway) as erasure:
        assert erasure.apply_to_version(v1) == 0
    assert sqlite_gateway.queries.excluded_rows(v1.version_id) == frozenset()


def test_completed_requests_of_one_subject_with_different_scopes_all_apply(
    sqlite_gateway: Gateway,
) -> None:
    # Two requests for the same subject share its commitment; once both have completed, a new
    # version must still be matched for each, not for whichever the lookup kept last.
    g = sqlite_gateway
    register(g, "alpha", people(["s1", "s2"]), "sid")
    only_alpha = g.commands.request_erasure("s1", ["alpha"], "gdpr-art17", "officer")
    everywhere = g.commands.request_erasure("s1", None, "gdpr-art17", "officer")
    assert only_alpha.id != everywhere.id
    for request in (only_alpha, everywhere):
        assert g.queries.erasure_request(request.id).info.subject_id is None

    v2 = register(g, "alpha", people(["s2", "s1", "s1"]), "sid")
    assert g.queries.excluded_rows(v2.version_id) == frozenset({1, 2})
    assert g.queries.erasure_request(only_alpha.id).info.excluded_rows == 3
    assert g.queries.erasure_request(everywhere.id).info.excluded_rows == 3
