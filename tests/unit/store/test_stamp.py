"""The change stamp and the caches that trust it: exact across processes sharing a store, so a
revocation or a new version made by one gateway holds in another at its next request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from govern.errors import AuthError, StoreUnavailable
from govern.gateway import Gateway
from govern.settings import Settings, load_settings
from govern.store import Database
from govern.store.migrate import upgrade
from govern.store.stamp import StampedCache, read_stamp
from tests.conftest import TEST_ACTOR


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Gateway, Gateway, Settings]]:
    """Two gateways over one store and home: two processes of one deployment."""
    settings = load_settings(home=tmp_path / "home", config=tmp_path / "none.toml")
    upgrade(settings.resolved_database_url)
    a, b = Gateway.open(settings), Gateway.open(settings)
    yield a, b, settings
    a.close()
    b.close()


def test_every_change_moves_the_stamp_and_a_change_that_changes_nothing_does_not(
    two: tuple[Gateway, Gateway, Settings],
) -> None:
    a, _, settings = two
    db = Database(settings.resolved_database_url)
    try:
        start = read_stamp(db)
        a.commands.put_principal("alice", ["trainer"], {}, TEST_ACTOR)
        assert read_stamp(db) == start + 1
        a.commands.request_erasure("nobody", None, "gdpr-art17", TEST_ACTOR)
        after = read_stamp(db)
        assert after == start + 2
        a.commands.request_erasure("nobody", None, "gdpr-art17", TEST_ACTOR)  # the same again
        assert read_stamp(db) == after
    finally:
        db.dispose()


def test_a_token_revoked_by_another_process_is_refused_at_once(
    two: tuple[Gateway, Gateway, Settings],
) -> None:
    a, b, _ = two
    a.commands.put_principal("alice", ["trainer"], {}, TEST_ACTOR)
    issued = a.commands.issue_token("alice", "trainer", TEST_ACTOR)
    assert a.decider.authenticate(issued.token).id == "alice"  # now cached in a
    assert a.decider.authenticate(issued.token).id == "alice"
    b.commands.revoke_token(issued.jti, TEST_ACTOR)
    with pytest.raises(AuthError, match="revoked"):
        a.decider.authenticate(issued.token)
    other = a.commands.issue_token("alice", "trainer", TEST_ACTOR)
    a.decider.authenticate(other.token)
    b.commands.put_principal("alice", ["steward"], {}, TEST_ACTOR)  # the role withdrawn
    with pytest.raises(AuthError, match="role withdrawn"):
        a.decider.authenticate(other.token)


def test_a_version_registered_by_another_process_is_served_at_once(
    two: tuple[Gateway, Gateway, Settings],
) -> None:
    a, b, _ = two
    table = pa.table({"uid": ["x", "y"], "n": [1, 2]})
    a.commands.register_dataset("people", table, "uid", TEST_ACTOR)
    assert a.queries.dataset("people").version == 1  # cached in a
    b.commands.register_dataset("people", table, "uid", TEST_ACTOR)
    assert a.queries.dataset("people").version == 2


def test_the_cache_is_bypassed_inside_a_transaction_and_fails_with_the_store(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'govern.db'}"
    upgrade(url)
    db = Database(url)
    loads: list[int] = []
    cache: StampedCache[str, int] = StampedCache(db)

    def load() -> int:
        loads.append(1)
        return len(loads)

    assert cache.get("k", load) == 1
    assert cache.get("k", load) == 1  # the stamp has not moved
    with db.transaction("command"):
        assert cache.get("k", load) == 2  # what a transaction sees is not yet the truth
    assert cache.get("k", load) == 1
    db.dispose()
    (tmp_path / "govern.db").unlink()
    (tmp_path / "govern.db").mkdir()  # a store that cannot be opened
    with pytest.raises(StoreUnavailable):
        StampedCache(Database(url)).get("k", load)
