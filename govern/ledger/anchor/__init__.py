"""Anchoring signed checkpoints on an Ethereum chain.

- :mod:`.base`: the :class:`Chain` interface, receipts, errors, the compiled contract.
- :mod:`.contract`: the Anchor contract driven through web3 (shared by both backends).
- :mod:`.embedded`: the default, an in-process EVM persisted under ``GOVERN_HOME/chain``.
- :mod:`.rpc`: any Ethereum JSON-RPC node, with a funded key.
- :mod:`.anchorer`: the background thread that anchors every N entries or T seconds.
- :mod:`.records`: the ``ledger_anchors`` table.

web3 and py-evm take most of a second to import, so the backends load only when a chain is
opened; importing this package stays cheap for CLI commands that never touch a chain.
"""

from __future__ import annotations

from govern.ledger.anchor.anchorer import Anchorer, AnchorStatus
from govern.ledger.anchor.base import (
    AnchorConflict,
    AnchorReceipt,
    Chain,
    ChainConfigError,
    ChainHead,
    ChainUnavailable,
)
from govern.ledger.anchor.records import AnchorRecord, AnchorRecords
from govern.settings import Settings

__all__ = [
    "AnchorConflict",
    "AnchorReceipt",
    "AnchorRecord",
    "AnchorRecords",
    "AnchorStatus",
    "Anchorer",
    "Chain",
    "ChainConfigError",
    "ChainHead",
    "ChainUnavailable",
    "open_chain",
]


def open_chain(settings: Settings, *, read_only: bool = False, rpc_url: str | None = None) -> Chain:
    """The chain the settings name (or the node at ``rpc_url``).

    ``read_only`` opens it for lookups only: the embedded chain is then not locked (a serving
    gateway may hold it) and no chain key is needed.
    """
    if rpc_url is not None or settings.chain_backend == "rpc":
        from govern.ledger.anchor.keys import load_chain_key
        from govern.ledger.anchor.rpc import RpcChain

        url = rpc_url or settings.chain_rpc_url
        assert url is not None  # the settings refuse rpc without a URL
        return RpcChain(
            url,
            account=None if read_only else load_chain_key(settings.resolved_chain_key_file),
            contract_address=settings.chain_contract_address,
            state_dir=settings.chain_dir,
        )
    if settings.chain_backend == "embedded":
        from govern.ledger.anchor.embedded import EmbeddedChain

        return EmbeddedChain(
            settings.chain_dir,
            None if read_only else settings.resolved_chain_key_file,
            read_only=read_only,
        )
    raise ChainConfigError("anchoring is off (chain_backend is none)")
