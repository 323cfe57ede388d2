"""GOVERN_HOME's disk fills up during an upload: a clear 507 with a machine-readable reason,
no partial version, no file left behind, and the gateway keeps serving."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import httpx

from tests.faults.conftest import ALLOWED, GovernServer, prepare, stray_files


def _random_csv(path: Path, size: int) -> None:
    """Incompressible rows (random hex), so the staged Parquet is about half the CSV."""
    with path.open("w") as f:
        f.write("uid,blob\n")
        i = 0
        while f.tell() < size:
            f.write(f"u{i},{secrets.token_hex(64)}\n")
            i += 1


def _upload(server: GovernServer, path: Path) -> httpx.Response:
    with path.open("rb") as f:
        return httpx.post(
            f"{server.url}/v1/datasets",
            headers=server.headers(server.steward),
            data={"name": "blobs", "subject_column": "uid"},
            files={"file": ("blobs.csv", f, "text/csv")},
            timeout=120,
        )


def _free(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def test_a_full_disk_during_an_upload_is_a_507_and_leaves_no_partial_version(
    small_disk: Path, tmp_path: Path
) -> None:
    server = prepare(small_disk / "home")
    try:
        server.start()
        free = _free(small_disk)
        too_big, fits_alone = tmp_path / "too-big.csv", tmp_path / "fits-alone.csv"
        # The body itself does not fit while it is received ...
        _random_csv(too_big, free + (2 << 20))
        # ... and this one does, but not with its staged Parquet copy beside it.
        _random_csv(fits_alone, int(free * 0.8))
        for path in (too_big, fits_alone):
            r = _upload(server, path)
            assert r.status_code == 507, (path.name, r.status_code, r.text)
            body = r.json()
            assert body["error"] == "storage_full", body
            assert stray_files(server) == {"uploads": [], "unnamed": [], "bad_versions": []}
            assert _free(small_disk) > free - (1 << 20), "the space was not given back"

        # Still serving what it may: decisions, and an upload that fits, as version 1.
        headers = server.headers(server.trainer)
        decided = httpx.post(f"{server.url}/v1/decisions", json=ALLOWED, headers=headers)
        assert decided.status_code == 200 and decided.json()["decision"] == "allow"
        small = tmp_path / "small.csv"
        _random_csv(small, 50_000)
        r = _upload(server, small)
        assert r.status_code == 201, r.text
        assert r.json()["version"] == 1
        verified = server.cli("ledger", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        server.halt()
