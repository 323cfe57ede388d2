"""The Anchor contract driven through web3: deploy, anchor, look up. Shared by every backend.

All calls go through one lock: eth-tester is not thread-safe, and on a real node one sender
must not race itself for nonces.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.types import TxParams, TxReceipt

from govern.errors import GovernError
from govern.ledger.anchor.base import (
    AnchorConflict,
    AnchorReceipt,
    Chain,
    ChainConfigError,
    ChainHead,
    ChainUnavailable,
    ContractArtifact,
    load_artifact,
)

__all__ = ["ContractChain"]

log = logging.getLogger("govern.ledger.anchor")

_ZERO = bytes(32)
_MAX_TREE_SIZE = (1 << 64) - 1  # the contract keys roots by uint64


class ContractChain(Chain):
    """A chain reached through a web3 instance, with govern's Anchor contract on it.

    ``contract_address`` None means "not deployed yet": the first :meth:`anchor` deploys it and
    hands the address to ``on_deploy`` so the caller can remember it.
    """

    def __init__(
        self,
        w3: Web3,
        *,
        account: LocalAccount | None,
        contract_address: str | None,
        on_deploy: Callable[[str, int], None] | None = None,
        receipt_timeout: float = 120.0,
        description: str = "chain",
        artifact: ContractArtifact | None = None,
    ) -> None:
        self.w3 = w3
        self.account = account
        self.artifact = artifact or load_artifact()
        self.description = description
        self._on_deploy = on_deploy
        self._receipt_timeout = receipt_timeout
        self._lock = threading.RLock()
        self._chain_id: int | None = None
        self._contract_address: str | None = (
            to_checksum_address(contract_address) if contract_address else None
        )
        self._verified: set[str] = set()  # addresses whose code was checked
        self._owner_checked = False

    # -- plumbing ---------------------------------------------------------------------------------

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Serialise, and turn any failure of the node or the client into ChainUnavailable."""
        with self._lock:
            try:
                yield
            except GovernError:
                raise
            except Exception as exc:
                # Connection refused, timeouts, JSON-RPC errors (insufficient funds, nonce too
                # low), a node mid-restart: all are "try again later" to the anchorer.
                raise ChainUnavailable(
                    f"{self.description}: {what} failed: {type(exc).__name__}: {exc}",
                    details={"chain": self.description},
                ) from exc

    def _contract(self, address: str) -> Contract:
        return self.w3.eth.contract(address=to_checksum_address(address), abi=self.artifact.abi)

    @property
    def contract_address(self) -> str | None:
        return self._contract_address

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            with self._guard("reading the chain id"):
                self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    def _check_code(self, address: str) -> None:
        if address in self._verified:
            return
        code = bytes(self.w3.eth.get_code(to_checksum_address(address)))
        if not code:
            raise ChainConfigError(
                f"no contract at {address} on {self.description} (chain id {self.chain_id})"
            )
        if not self.artifact.matches_runtime(code):
            raise ChainConfigError(
                f"the contract at {address} on {self.description} is not govern's Anchor "
                f"contract (runtime code differs from the {self.artifact.compiler} build)"
            )
        self._verified.add(address)

    # -- deploying --------------------------------------------------------------------------------

    def _require_account(self) -> LocalAccount:
        if self.account is None:
            raise ChainConfigError(f"{self.description}: no chain key, so nothing can be written")
        return self.account

    def _send(self, tx: TxParams) -> TxReceipt:
        account = self._require_account()
        signed = account.sign_transaction(cast(dict[str, Any], tx))
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        return self.w3.eth.wait_for_transaction_receipt(
            tx_hash, timeout=self._receipt_timeout, poll_latency=0.05
        )

    def _base_tx(self) -> TxParams:
        account = self._require_account()
        return {
            "from": account.address,
            "chainId": self.chain_id,
            # "pending" so that a transaction still waiting in the pool is not replaced.
            "nonce": self.w3.eth.get_transaction_count(account.address, "pending"),
        }

    def deploy(self) -> str:
        """Deploy a new Anchor contract owned by this chain key; returns its address."""
        with self._guard("deploying the anchor contract"):
            factory = self.w3.eth.contract(abi=self.artifact.abi, bytecode=self.artifact.bytecode)
            receipt = self._send(factory.constructor().build_transaction(self._base_tx()))
            address = receipt.get("contractAddress")
            if receipt["status"] != 1 or not address:
                raise ChainUnavailable(f"{self.description}: the deployment transaction failed")
            address = to_checksum_address(address)
            self._check_code(address)
            self._contract_address = address
            log.info(
                "deployed the anchor contract at %s on %s (chain id %d, block %d, gas %d)",
                address,
                self.description,
                self.chain_id,
                receipt["blockNumber"],
                receipt["gasUsed"],
            )
            if self._on_deploy is not None:
                self._on_deploy(address, int(receipt["blockNumber"]))
            return address

    def _known_contract(self) -> str | None:
        """The contract to use if one exists already; subclasses may look it up lazily."""
        return self._contract_address

    def adopt_contract(self, address: str) -> None:
        """Use ``address`` (say, from earlier anchor records) unless a contract is configured."""
        if self._known_contract() is None:
            self._contract_address = to_checksum_address(address)

    def _writable_contract(self) -> Contract:
        address = self._known_contract() or self.deploy()
        self._contract_address = address
        self._check_code(address)
        contract = self._contract(address)
        if not self._owner_checked:
            owner = contract.functions.owner().call()
            account = self._require_account()
            if to_checksum_address(owner) != account.address:
                raise ChainConfigError(
                    f"the anchor contract at {address} is owned by {owner}, not by this "
                    f"gateway's chain key {account.address}"
                )
            self._owner_checked = True
        return contract

    # -- anchoring --------------------------------------------------------------------------------

    def anchor(self, tree_size: int, root: bytes) -> AnchorReceipt:
        if not 0 < tree_size <= _MAX_TREE_SIZE or len(root) != 32 or root == _ZERO:
            raise ValueError("anchor needs 0 < tree_size < 2**64 and a non-zero 32-byte root")
        with self._guard(f"anchoring tree size {tree_size}"):
            contract = self._writable_contract()
            existing = bytes(contract.functions.rootAt(tree_size).call())
            if existing == root:
                return self._already_anchored(contract, tree_size, root)
            if existing != _ZERO:
                raise AnchorConflict(
                    f"the chain already holds a different root for tree size {tree_size}",
                    details={"chain_root": existing.hex(), "root": root.hex()},
                )
            tx = contract.functions.anchor(tree_size, root).build_transaction(self._base_tx())
            receipt = self._send(tx)
            if receipt["status"] != 1:
                # Lost a race with another replica anchoring the same size, or a real failure.
                if bytes(contract.functions.rootAt(tree_size).call()) == root:
                    return self._already_anchored(contract, tree_size, root)
                raise ChainUnavailable(
                    f"{self.description}: the anchor transaction for tree size {tree_size} "
                    f"reverted (tx {receipt['transactionHash'].to_0x_hex()})"
                )
            return self._receipt(contract, tree_size, root, receipt, already=False)

    def _receipt(
        self, contract: Contract, tree_size: int, root: bytes, receipt: TxReceipt, *, already: bool
    ) -> AnchorReceipt:
        return AnchorReceipt(
            tree_size=tree_size,
            root=root,
            chain_id=self.chain_id,
            contract_address=contract.address,
            tx_hash=HexBytes(receipt["transactionHash"]).to_0x_hex(),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            already_anchored=already,
        )

    def _already_anchored(self, contract: Contract, tree_size: int, root: bytes) -> AnchorReceipt:
        """The receipt of the transaction that first anchored ``root``, found by its event."""
        events = contract.events.Anchored().get_logs(
            from_block=0, argument_filters={"treeSize": tree_size}
        )
        for event in events:
            if bytes(event["args"]["root"]) == root:
                receipt = self.w3.eth.get_transaction_receipt(event["transactionHash"])
                return self._receipt(contract, tree_size, root, receipt, already=True)
        raise ChainUnavailable(
            f"{self.description}: tree size {tree_size} is anchored but its event is not found"
        )

    # -- reading ----------------------------------------------------------------------------------

    def lookup(self, tree_size: int, contract_address: str | None = None) -> bytes | None:
        address = contract_address or self._known_contract()
        if address is None:
            return None
        if not 0 < tree_size <= _MAX_TREE_SIZE:
            return None
        with self._guard(f"reading the anchor of tree size {tree_size}"):
            address = to_checksum_address(address)
            self._check_code(address)
            root = bytes(self._contract(address).functions.rootAt(tree_size).call())
        return None if root == _ZERO else root

    def head(self) -> ChainHead:
        with self._guard("reading the chain head"):
            latest: int | None = None
            address = self._known_contract()
            if address is not None:
                self._check_code(address)
                contract = self._contract(address)
                latest = int(contract.functions.latestTreeSize().call())
            account = self.account.address if self.account is not None else None
            balance = int(self.w3.eth.get_balance(account)) if account is not None else None
            return ChainHead(
                chain_id=self.chain_id,
                block_number=int(self.w3.eth.block_number),
                contract_address=address,
                account=account,
                balance_wei=balance,
                latest_tree_size=latest,
            )
