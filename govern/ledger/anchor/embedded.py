"""The embedded chain: a real EVM (py-evm, driven through eth-tester and web3) in this process,
whose whole chain database lives in a SQLite file under ``GOVERN_HOME/chain``.

How it persists: py-evm keeps everything (headers, blocks, receipts, the canonical-head
pointer, every state-trie node) in one key-value database. eth-tester gives it an in-memory one;
here it gets :class:`SqliteKV`, a key-value table in ``embedded.sqlite`` where each py-evm
atomic batch is one SQLite transaction (WAL, ``synchronous=FULL``). On restart the chain is
reopened at its stored canonical head, so the contract, its storage and every past block are
exactly what was mined before: nothing is replayed or re-derived.

One process writes (it holds ``embedded.lock``); others, such as ``govern ledger verify`` while
``govern serve`` runs, may open it read-only: they read the committed state and can never mine.
The chain key is funded in the genesis block, which is created on first use.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eth.abc import AtomicWriteBatchAPI, BlockHeaderAPI, VirtualMachineAPI
from eth.chains.base import MiningChain
from eth.db.backends.base import BaseAtomicDB, BaseDB
from eth.db.chain import ChainDB
from eth.exceptions import CanonicalHeadNotFound
from eth.typing import AccountDetails
from eth.vm.forks.prague import PragueVM
from eth_account.signers.local import LocalAccount
from eth_keys.datatypes import PrivateKey
from eth_tester import EthereumTester
from eth_tester.backends.pyevm.main import PyEVMBackend
from eth_typing import Address, BlockNumber
from eth_utils.address import to_canonical_address, to_checksum_address
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider

from govern.ledger.anchor.base import ChainConfigError, ChainHead, ChainUnavailable
from govern.ledger.anchor.contract import ContractChain
from govern.ledger.anchor.keys import load_or_create_chain_key

__all__ = ["EMBEDDED_CHAIN_ID", "EmbeddedChain", "SqliteKV"]

# web3's eth-tester provider answers eth_chainId with this fixed value (eth-tester's own chain
# id), so the EVM must use it too: transactions are signed for the id web3 reports.
EMBEDDED_CHAIN_ID = 131277322940537
_GENESIS_BALANCE = 10**6 * 10**18  # a million ether pays for ~10^10 anchors at 1 gwei
_DB_FILE = "embedded.sqlite"
_STATE_FILE = "embedded.json"
_LOCK_FILE = "embedded.lock"


class _ReadOnly(ChainUnavailable):
    code = "chain_read_only"


class _WriteBatch(BaseDB, AtomicWriteBatchAPI):
    """Writes held aside until the batch ends, readable meanwhile (py-evm's batch contract)."""

    def __init__(self, target: SqliteKV) -> None:
        self._target = target
        self.pending: dict[bytes, bytes | None] = {}  # None marks a delete

    def __getitem__(self, key: bytes) -> bytes:
        if key in self.pending:
            value = self.pending[key]
            if value is None:
                raise KeyError(key)
            return value
        return self._target[key]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.pending[key] = value

    def __delitem__(self, key: bytes) -> None:
        if key not in self:
            raise KeyError(key)
        self.pending[key] = None

    def _exists(self, key: bytes) -> bool:
        try:
            self[key]
        except KeyError:
            return False
        return True


class SqliteKV(BaseAtomicDB):
    """py-evm's key-value database in a SQLite file; each atomic batch is one transaction."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        # Autocommit mode: single writes commit at once, batches BEGIN/COMMIT explicitly.
        self._conn = sqlite3.connect(
            str(path), timeout=30, check_same_thread=False, isolation_level=None
        )
        self._lock = threading.RLock()
        if not read_only:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID"
            )

    def __getitem__(self, key: bytes) -> bytes:
        with self._lock:
            row = self._conn.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return bytes(row[0])

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._write({key: value})

    def __delitem__(self, key: bytes) -> None:
        if key not in self:
            raise KeyError(key)
        self._write({key: None})

    def _exists(self, key: bytes) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1 FROM kv WHERE k = ?", (key,)).fetchone() is not None

    def _write(self, changes: dict[bytes, bytes | None]) -> None:
        if self.read_only:
            raise _ReadOnly(f"the embedded chain at {self.path} is open read-only")
        if not changes:
            return
        puts = [(k, v) for k, v in changes.items() if v is not None]
        deletes = [(k,) for k, v in changes.items() if v is None]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if puts:
                    self._conn.executemany("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", puts)
                if deletes:
                    self._conn.executemany("DELETE FROM kv WHERE k = ?", deletes)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def atomic_batch(self) -> Iterator[AtomicWriteBatchAPI]:
        batch = _WriteBatch(self)
        yield batch
        # Reached only when the block did not raise: all of the batch or none of it lands.
        self._write(batch.pending)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _EmbeddedEVM(MiningChain):
    """The chain eth-tester builds by default: Prague rules, constant gas limit."""

    chain_id = EMBEDDED_CHAIN_ID
    vm_configuration: tuple[tuple[BlockNumber, type[VirtualMachineAPI]], ...] = (
        (BlockNumber(0), PragueVM),
    )

    def create_header_from_parent(
        self, parent_header: BlockHeaderAPI, **header_params: Any
    ) -> BlockHeaderAPI:
        header_params["gas_limit"] = parent_header.gas_limit
        return super().create_header_from_parent(parent_header, **header_params)

    def get_transaction_builder(self) -> Any:
        return self.get_vm().get_transaction_builder()


class _PersistentBackend(PyEVMBackend):  # type: ignore[misc]
    """eth-tester's py-evm backend over an already-open chain instead of a fresh in-memory one."""

    def __init__(self, chain: _EmbeddedEVM, account: LocalAccount | None) -> None:
        # PyEVMBackend.__init__ would build a new genesis; everything else it does is this.
        self.chain = chain
        self.account_keys = (PrivateKey(account.key),) if account is not None else ()

    def reset_to_genesis(self, *args: Any, **kwargs: Any) -> None:
        raise ChainConfigError("the embedded chain is persistent and is never reset")


class EmbeddedChain(ContractChain):
    """The in-process chain under ``directory`` (normally ``GOVERN_HOME/chain``)."""

    def __init__(self, directory: Path, key_file: Path | None, *, read_only: bool = False) -> None:
        self.directory = directory
        self._state_path = directory / _STATE_FILE
        self._lock_fd: int | None = None
        db_path = directory / _DB_FILE
        account: LocalAccount | None = None
        if read_only:
            if not db_path.exists():
                raise ChainUnavailable(f"there is no embedded chain at {directory}")
        else:
            directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = _lock(directory / _LOCK_FILE)
            if key_file is None:
                raise ChainConfigError("the embedded chain needs a chain key file")
            account = load_or_create_chain_key(key_file)
        self.read_only = read_only
        try:
            self.kv = SqliteKV(db_path, read_only=read_only)
            state = self._read_state()
            evm = self._open_evm(account, state)
            self._evm = evm
        except BaseException:
            self._unlock()
            raise
        w3 = Web3(EthereumTesterProvider(EthereumTester(_PersistentBackend(evm, account))))
        if account is None and state.get("account"):
            # eth-tester wants a sender that can pay for gas even for eth_call, and a reader has
            # no key: calls go "from" the funded chain key's address (no signature needed).
            w3.eth.default_account = to_checksum_address(state["account"])
        super().__init__(
            w3,
            account=account,
            contract_address=state.get("contract_address"),
            on_deploy=self._remember_contract,
            description=f"embedded chain {directory}",
        )

    def _open_evm(self, account: LocalAccount | None, state: dict[str, Any]) -> _EmbeddedEVM:
        try:
            ChainDB(self.kv).get_canonical_head()
        except CanonicalHeadNotFound:
            if account is None:
                raise ChainUnavailable(f"the embedded chain at {self.directory} is empty") from None
            return self._create(account)
        if account is not None and state.get("account") not in (None, account.address):
            raise ChainConfigError(
                f"the embedded chain at {self.directory} funds chain key {state['account']}, "
                f"but the key file holds {account.address}"
            )
        evm = _EmbeddedEVM(self.kv)
        genesis = evm.get_canonical_block_header_by_number(BlockNumber(0)).hash.hex()
        if state.get("genesis_hash") not in (None, genesis):
            raise ChainConfigError(
                f"{self._state_path} describes another chain (genesis {state['genesis_hash']})"
            )
        return evm

    def _create(self, account: LocalAccount) -> _EmbeddedEVM:
        genesis_state: dict[Address, AccountDetails] = {
            to_canonical_address(account.address): {
                "balance": _GENESIS_BALANCE,
                "nonce": 0,
                "code": b"",
                "storage": {},
            }
        }
        params = PyEVMBackend.generate_genesis_params()
        evm = _EmbeddedEVM.from_genesis(self.kv, params, genesis_state)
        assert isinstance(evm, _EmbeddedEVM)
        self._write_state(
            {
                "chain_id": EMBEDDED_CHAIN_ID,
                "genesis_hash": evm.get_canonical_block_header_by_number(BlockNumber(0)).hash.hex(),
                "account": account.address,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        return evm

    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self._state_path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise ChainConfigError(f"{self._state_path} is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ChainConfigError(f"{self._state_path} is not a JSON object")
        return data

    def _write_state(self, data: dict[str, Any]) -> None:
        tmp = self._state_path.with_suffix(".tmp")
        with open(tmp, "w") as out:
            json.dump(data, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self._state_path)

    def _remember_contract(self, address: str, block: int) -> None:
        state = self._read_state()
        state.update(contract_address=to_checksum_address(address), contract_block=block)
        self._write_state(state)

    def _follow_writer(self) -> None:
        # A reader's pending block was built on the head it saw when it opened; rebuild it on
        # the current stored head so that "latest" includes what the writer mined since.
        if self.read_only:
            with self._lock:
                self._evm.header = self._evm.ensure_header()

    def lookup(self, tree_size: int, contract_address: str | None = None) -> bytes | None:
        self._follow_writer()
        return super().lookup(tree_size, contract_address)

    def head(self) -> ChainHead:
        self._follow_writer()
        return super().head()

    @property
    def block_number(self) -> int:
        """Blocks mined so far (the head's number), read without web3 (cheap, for tests)."""
        return int(ChainDB(self.kv).get_canonical_head().block_number)

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def close(self) -> None:
        with self._lock:
            self.kv.close()
            self._unlock()


def _lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ChainUnavailable(
            f"the embedded chain at {path.parent} is in use by another govern process; "
            "only one process may write it"
        ) from None
    return fd
