"""The embedded chain: a real EVM in process, persisted under the home directory."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from govern.errors import Unavailable
from govern.ledger.anchor import AnchorConflict, ChainConfigError, ChainUnavailable
from govern.ledger.anchor.embedded import EmbeddedChain, SqliteKV
from govern.ledger.anchor.keys import create_chain_key, load_chain_key


def root(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "chain", tmp_path / "keys" / "chain.key"


def test_anchor_lookup_and_idempotent_retry(paths: tuple[Path, Path]) -> None:
    chain = EmbeddedChain(*paths)
    try:
        first = chain.anchor(7, root("a"))
        assert not first.already_anchored
        assert first.gas_used is not None and 40_000 < first.gas_used < 100_000
        assert first.block_number == 2  # block 1 deployed the contract
        assert chain.lookup(7) == root("a")
        assert chain.lookup(8) is None
        # A retry after a lost receipt finds the first transaction instead of failing.
        again = chain.anchor(7, root("a"))
        assert again.already_anchored and again.tx_hash == first.tx_hash
        # A different root for an anchored size is refused by the contract's write-once rule.
        with pytest.raises(AnchorConflict):
            chain.anchor(7, root("b"))
        head = chain.head()
        assert head.latest_tree_size == 7
        assert head.contract_address == first.contract_address
        assert head.balance_wei is not None and head.balance_wei > 0
    finally:
        chain.close()


def test_state_survives_a_restart(paths: tuple[Path, Path]) -> None:
    chain = EmbeddedChain(*paths)
    receipt = chain.anchor(3, root("three"))
    blocks = chain.block_number
    chain.close()

    reopened = EmbeddedChain(*paths)
    try:
        # Same chain: same contract, same storage, and the next block follows the old head.
        assert reopened.contract_address == receipt.contract_address
        assert reopened.block_number == blocks
        assert reopened.lookup(3) == root("three")
        later = reopened.anchor(5, root("five"))
        assert later.block_number == blocks + 1
        assert reopened.chain_id == receipt.chain_id
    finally:
        reopened.close()


def test_one_writer_many_readers(paths: tuple[Path, Path]) -> None:
    writer = EmbeddedChain(*paths)
    try:
        writer.anchor(1, root("one"))
        with pytest.raises(ChainUnavailable, match="in use by another govern process"):
            EmbeddedChain(*paths)
        reader = EmbeddedChain(paths[0], None, read_only=True)
        try:
            assert reader.lookup(1) == root("one")
            writer.anchor(2, root("two"))
            assert reader.lookup(2) == root("two")  # sees what the writer mined since
            with pytest.raises(ChainConfigError, match="no chain key"):
                reader.anchor(3, root("three"))
            # Even with a key, the reader's database refuses writes.
            with pytest.raises(Unavailable, match="read-only"):
                reader.kv[b"k"] = b"v"
        finally:
            reader.close()
    finally:
        writer.close()


def test_a_foreign_contract_is_refused(paths: tuple[Path, Path]) -> None:
    chain = EmbeddedChain(*paths)
    try:
        chain.anchor(1, root("one"))
        account = load_chain_key(paths[1]).address  # an address with no code
        with pytest.raises(ChainConfigError, match="no contract"):
            chain.lookup(1, account)
    finally:
        chain.close()


def test_reading_a_missing_chain_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ChainUnavailable, match="no embedded chain"):
        EmbeddedChain(tmp_path / "nothing", None, read_only=True)


def test_chain_key_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "chain.key"
    account = create_chain_key(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert load_chain_key(path).address == account.address
    with pytest.raises(ChainConfigError, match="already exists"):
        create_chain_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(ChainConfigError, match="chmod 600"):
        load_chain_key(path)


def test_kv_batches_are_all_or_nothing(tmp_path: Path) -> None:
    kv = SqliteKV(tmp_path / "kv.sqlite")
    kv[b"a"] = b"1"

    def crash_mid_batch() -> None:
        with kv.atomic_batch() as batch:
            batch[b"b"] = b"2"
            del batch[b"a"]
            assert b"b" in batch and b"a" not in batch
            raise RuntimeError("crash mid-batch")

    with pytest.raises(RuntimeError):
        crash_mid_batch()
    assert kv[b"a"] == b"1" and b"b" not in kv
    with kv.atomic_batch() as batch:
        batch[b"b"] = b"2"
        del batch[b"a"]
    assert kv[b"b"] == b"2" and b"a" not in kv
    kv.close()
    assert SqliteKV(tmp_path / "kv.sqlite")[b"b"] == b"2"
