"""What every chain backend offers the anchorer and the verifier, and the errors they raise.

A :class:`Chain` writes a checkpoint's ``(tree_size, root)`` into govern's Anchor contract and
reads it back. Backends: :mod:`govern.ledger.anchor.embedded` (an in-process EVM whose state
lives in a file under ``GOVERN_HOME``) and :mod:`govern.ledger.anchor.rpc` (any Ethereum JSON-RPC
node). Both drive the same compiled contract through web3 (:mod:`.contract`).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from govern.errors import ConfigError, Conflict, Unavailable

__all__ = [
    "ARTIFACT_PATH",
    "AnchorConflict",
    "AnchorReceipt",
    "Chain",
    "ChainConfigError",
    "ChainHead",
    "ChainUnavailable",
    "ContractArtifact",
    "load_artifact",
]

ARTIFACT_PATH = Path(__file__).resolve().parent / "build" / "Anchor.json"


class ChainUnavailable(Unavailable):
    """The chain cannot be reached or cannot take a transaction now; anchoring retries later."""

    code = "chain_unavailable"


class ChainConfigError(ConfigError):
    """The chain settings cannot work: no key, no contract build, a foreign contract."""

    code = "chain_config_invalid"


class AnchorConflict(Conflict):
    """The contract already holds a different root for this tree size."""

    code = "anchor_conflict"


@dataclass(frozen=True)
class AnchorReceipt:
    """An anchor as the chain recorded it."""

    tree_size: int
    root: bytes
    chain_id: int
    contract_address: str
    tx_hash: str
    block_number: int
    gas_used: int | None
    # True when the root was already on the chain (a retry after a lost receipt, or another
    # replica anchored it first): the receipt is then that earlier transaction's.
    already_anchored: bool = False


@dataclass(frozen=True)
class ChainHead:
    chain_id: int
    block_number: int
    contract_address: str | None
    account: str | None
    balance_wei: int | None
    latest_tree_size: int | None


@dataclass(frozen=True)
class ContractArtifact:
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    immutable_ranges: tuple[tuple[int, int], ...]
    compiler: str

    def matches_runtime(self, code: bytes) -> bool:
        """Whether deployed ``code`` is this contract: equal outside the immutable slots."""
        expected = bytearray(bytes.fromhex(self.deployed_bytecode.removeprefix("0x")))
        actual = bytearray(code)
        if len(actual) != len(expected):
            return False
        for start, length in self.immutable_ranges:
            actual[start : start + length] = bytes(length)
        return actual == expected


@cache
def load_artifact(path: Path = ARTIFACT_PATH) -> ContractArtifact:
    """The compiled Anchor contract, built from ``contracts/Anchor.sol`` by ``make contracts``."""
    try:
        data = json.loads(path.read_text())
        ranges = tuple(
            (int(ref["start"]), int(ref["length"]))
            for refs in data.get("immutableReferences", {}).values()
            for ref in refs
        )
        return ContractArtifact(
            abi=list(data["abi"]),
            bytecode=str(data["bytecode"]),
            deployed_bytecode=str(data["deployedBytecode"]),
            immutable_ranges=ranges,
            compiler=str(data.get("compiler", {}).get("version", "unknown")),
        )
    except FileNotFoundError as exc:
        raise ChainConfigError(
            f"the anchor contract is not built ({path} is missing); run `make contracts`"
        ) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise ChainConfigError(f"unreadable contract build {path}: {exc}") from exc


class Chain(ABC):
    """An Ethereum chain holding govern's Anchor contract."""

    #: Human-readable description for logs and ``ledger verify`` output.
    description: str = "chain"

    @property
    @abstractmethod
    def chain_id(self) -> int: ...

    @abstractmethod
    def anchor(self, tree_size: int, root: bytes) -> AnchorReceipt:
        """Write ``root`` for ``tree_size`` (deploying the contract first if there is none).

        Idempotent: if the same root is already anchored, returns that anchor's receipt.
        Raises ChainUnavailable (retry later), AnchorConflict, ChainConfigError.
        """

    @abstractmethod
    def lookup(self, tree_size: int, contract_address: str | None = None) -> bytes | None:
        """The root anchored for ``tree_size`` in the contract (default: this chain's), or
        None if that size was never anchored there."""

    @abstractmethod
    def head(self) -> ChainHead:
        """Chain id, block height, contract and account state, for status and metrics."""

    def adopt_contract(self, address: str) -> None:  # noqa: B027 - optional hook
        """Use ``address`` (say, from earlier anchor records) unless a contract is configured."""

    def close(self) -> None:  # noqa: B027 - optional hook; most backends hold nothing
        """Release files, locks and connections."""
