"""A production chain: any Ethereum JSON-RPC node (geth, an L2, a hosted endpoint, ganache).

Transactions are signed here with the chain key and sent raw, so the node needs no unlocked
accounts. The contract address comes from ``GOVERN_CHAIN_CONTRACT_ADDRESS``, else from the file
this gateway wrote when it deployed one (``GOVERN_HOME/chain/rpc-<chain id>.json``), else a new
contract is deployed on the first anchor.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3 import HTTPProvider, Web3

from govern.ledger.anchor.base import ChainConfigError
from govern.ledger.anchor.contract import ContractChain

__all__ = ["RpcChain"]


class RpcChain(ContractChain):
    def __init__(
        self,
        url: str,
        *,
        account: LocalAccount | None,
        contract_address: str | None = None,
        state_dir: Path | None = None,
        timeout: float = 10.0,
        receipt_timeout: float = 120.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ChainConfigError(
                f"chain RPC URL must be http(s)://host[:port][/path], not {url!r}"
            )
        # web3's own retries would hold the anchorer inside one attempt for a long time while
        # the node is down; the anchorer's backoff does the retrying.
        provider = HTTPProvider(
            url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None
        )
        self.url = url
        self._state_dir = state_dir
        super().__init__(
            Web3(provider),
            account=account,
            contract_address=contract_address,
            on_deploy=self._remember_contract,
            receipt_timeout=receipt_timeout,
            # Never print credentials that may sit in the URL's user-info or query.
            description=f"JSON-RPC node {parts.scheme}://{parts.hostname}"
            + (f":{parts.port}" if parts.port else ""),
        )

    def _known_contract(self) -> str | None:
        if self._contract_address is None:
            # Looked up on use, not at start: the file is named by the chain id, which needs
            # the node, which may be down when the gateway starts.
            remembered = self._remembered().get("contract_address")
            if isinstance(remembered, str):
                self._contract_address = to_checksum_address(remembered)
        return self._contract_address

    def _state_file(self) -> Path | None:
        if self._state_dir is None:
            return None
        return self._state_dir / f"rpc-{self.chain_id}.json"

    def _remembered(self) -> dict[str, Any]:
        path = self._state_file()
        if path is None or not path.exists():
            return {}
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise ChainConfigError(f"{path} is not JSON: {exc}") from exc
        return data if isinstance(data, dict) else {}

    def _remember_contract(self, address: str, block: int) -> None:
        path = self._state_file()
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "chain_id": self.chain_id,
                    "contract_address": address,
                    "contract_block": block,
                    "account": self.account.address if self.account else None,
                },
                indent=2,
            )
        )
        os.replace(tmp, path)
