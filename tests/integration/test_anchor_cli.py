"""`govern ledger anchor` and `govern ledger verify` on the embedded chain, run as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

GOVERN = str(Path(sys.executable).with_name("govern"))


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GOVERN_HOME": str(home), "GOVERN_CONFIG": str(home / "none.toml")}
    for name in ("GOVERN_DATABASE_URL", "GOVERN_CHAIN_RPC_URL", "GOVERN_CHAIN_BACKEND"):
        env.pop(name, None)
    return subprocess.run(
        [GOVERN, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_anchor_and_verify_on_the_embedded_chain(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run(home, "db", "upgrade").returncode == 0
    r = run(home, "ledger", "verify")
    assert r.returncode == 0 and "anchors: none recorded yet" in r.stdout
    assert run(home, "principal", "add", "ann", "--role", "trainer").returncode == 0
    assert run(home, "token", "create", "--subject", "ann", "--role", "trainer").returncode == 0

    r = run(home, "ledger", "anchor")
    assert r.returncode == 0, r.stderr
    anchor = json.loads(r.stdout)
    # The principal and the token are logged (principal.put, token.issue): two entries.
    assert anchor["tree_size"] == 2 and anchor["tx_hash"].startswith("0x")
    assert anchor["gas_used"] > 21_000
    assert (home / "chain" / "embedded.sqlite").exists()
    r = run(home, "ledger", "anchor")
    assert r.returncode == 0 and "nothing to anchor" in r.stderr

    # A new process reopens the chain from its file and finds the anchor there.
    r = run(home, "ledger", "verify")
    assert r.returncode == 0, r.stderr
    assert "anchors OK: 1 of 1 anchors match the signed checkpoints on embedded chain" in r.stdout
    r = run(home, "ledger", "verify", "--no-chain")
    assert r.returncode == 0 and "chain check skipped (--no-chain)" in r.stdout
