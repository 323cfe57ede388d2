"""The chain key: a secp256k1 private key that pays for and signs anchor transactions.

Stored as one line of hex (``0x`` + 64 digits) in a file only its owner can read (mode 0600),
like the checkpoint signing key. The embedded chain creates one and funds it in its genesis
block; a JSON-RPC node needs a key that was funded on that chain beforehand.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from govern.ledger.anchor.base import ChainConfigError

__all__ = ["create_chain_key", "load_chain_key", "load_or_create_chain_key"]


def create_chain_key(path: Path, private_key: bytes | None = None) -> LocalAccount:
    """Write a new (or the given) private key to ``path`` with mode 0600; never overwrite."""
    key = private_key if private_key is not None else secrets.token_bytes(32)
    account: LocalAccount = Account.from_key(key)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # O_EXCL: replacing a funded key would strand its balance and the contract it owns.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise ChainConfigError(f"chain key {path} already exists; refusing to replace it") from exc
    except OSError as exc:
        raise ChainConfigError(f"chain key {path} cannot be created: {exc.strerror}") from exc
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write("0x" + key.hex() + "\n")
        out.flush()
        os.fsync(out.fileno())
    return account


def load_chain_key(path: Path) -> LocalAccount:
    """Load the key at ``path``; refuse a file that group or others can read."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ChainConfigError(f"chain key {path} is not a regular file")
        if info.st_mode & 0o077:
            raise ChainConfigError(
                f"chain key {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run chmod 600 on it"
            )
        text = path.read_text().strip()
    except FileNotFoundError as exc:
        raise ChainConfigError(
            f"chain key {path} does not exist; write a funded account's private key there "
            "(hex, mode 0600) or set GOVERN_CHAIN_KEY_FILE"
        ) from exc
    except OSError as exc:
        raise ChainConfigError(f"chain key {path} cannot be read: {exc.strerror}") from exc
    try:
        key = bytes.fromhex(text.removeprefix("0x"))
        if len(key) != 32:
            raise ValueError("not 32 bytes")
        account: LocalAccount = Account.from_key(key)
    except ValueError as exc:
        # The underlying message could quote key material; keep it out.
        raise ChainConfigError(f"chain key {path} is not 32 bytes of hex") from exc
    return account


def load_or_create_chain_key(path: Path) -> LocalAccount:
    if not path.exists():
        try:
            return create_chain_key(path)
        except ChainConfigError:
            if not path.exists():  # not a lost race with a concurrent first start
                raise
    return load_chain_key(path)
