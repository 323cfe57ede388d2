"""Scratch files: a sweep removes what a dead owner left and never what a live one holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from govern.catalog.scratch import (
    claim_file,
    claim_folder,
    release_folder,
    sweep_files,
    sweep_folders,
)


def test_a_sweep_leaves_a_claimed_file_and_removes_it_once_released(tmp_path: Path) -> None:
    claim = claim_file(tmp_path, ".upload-", ".parquet")
    claim.path.write_bytes(b"half")
    assert sweep_files(iter([claim.path])) == 0 and claim.path.exists()
    claim.release()
    assert sweep_files(iter([claim.path])) == 1 and not claim.path.exists()


def test_keep_is_asked_under_the_lock_and_spares_a_file_in_use(tmp_path: Path) -> None:
    path = tmp_path / "v1.parquet"
    path.write_bytes(b"committed")
    assert sweep_files(iter([path]), keep=lambda p: p == path) == 0 and path.exists()


def test_a_folder_claimed_by_a_killed_process_is_swept(tmp_path: Path) -> None:
    # The owner takes its lock and dies without releasing it (as SIGKILL leaves it).
    code = (
        "import os, sys; from pathlib import Path; from govern.catalog.scratch import "
        "claim_folder; c = claim_folder(Path(sys.argv[1])); (c.path / 'part').write_bytes(b'x');"
        " os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)
    live = claim_folder(tmp_path)
    (live.path / "part").write_bytes(b"y")
    assert sweep_folders(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [live.path.name]
    release_folder(live)
    assert list(tmp_path.iterdir()) == []
