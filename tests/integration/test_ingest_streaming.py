"""A large upload to a real `govern serve` streams to disk: the server's peak memory grows far
less than the file's size."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, wait_for

GOVERN = str(Path(sys.executable).with_name("govern"))
FILE_BYTES = 300 << 20


def _env(home: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "GOVERN_HOME": str(home),
        "GOVERN_CONFIG": str(home / "none.toml"),
        "GOVERN_CHAIN_BACKEND": "none",
        "GOVERN_POLICY_WATCHER": "none",
        # Validation reads 100k rows at a time, so its memory does not scale with the file.
        "GOVERN_QUALITY_CHUNK_ROWS": "100000",
    }
    env.pop("GOVERN_DATABASE_URL", None)
    return env


def _govern(home: Path, *args: str) -> str:
    r = subprocess.run(
        [GOVERN, *args], env=_env(home), capture_output=True, text=True, timeout=120, check=False
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _write_csv(path: Path, target: int) -> int:
    # Wide rows (about 3 kB): what must not be held is the file's bytes. Whole-column checks
    # (uniqueness of uid) do hold one short column, which grows with rows, not bytes.
    texts = [
        ("lorem ipsum dolor sit amet consectetur " * 80)[: 2900 + k] + f" variant {k}"
        for k in range(50)
    ]
    rows = 0
    with path.open("w") as f:
        f.write("uid,n,body\n")
        while f.tell() < target:
            f.write(
                "".join(
                    f"u{rows + i},{(rows + i) % 1000},{texts[(rows + i) % 50]}\n"
                    for i in range(10_000)
                )
            )
            rows += 10_000
    return rows


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str, int]]:
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to read the server's peak memory")
    home = tmp_path / "home"
    _govern(home, "db", "upgrade")
    _govern(home, "principal", "add", "st", "--role", "steward")
    token = _govern(home, "token", "create", "--subject", "st", "--role", "steward")
    port = free_port()
    proc = subprocess.Popen(
        [GOVERN, "serve", "--port", str(port), "--flight-port", str(free_port())],
        env=_env(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, timeout=60)
        yield url, token, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_large_upload_streams_to_disk(server: tuple[str, str, int], tmp_path: Path) -> None:
    url, token, pid = server
    headers = {"Authorization": f"Bearer {token}"}
    small = tmp_path / "small.csv"
    _write_csv(small, 1 << 20)

    def post(path: Path) -> httpx.Response:
        with path.open("rb") as f:
            return httpx.post(
                f"{url}/v1/datasets",
                headers=headers,
                data={"name": "bodies", "subject_column": "uid"},
                files={"file": (path.name, f, "text/csv")},
                timeout=300,
            )

    # Warm up first: the quality and detection libraries are imported on first use.
    assert post(small).status_code == 201
    before = _peak_rss(pid)
    medium = tmp_path / "medium.csv"
    _write_csv(medium, FILE_BYTES // 5)
    assert post(medium).status_code == 201
    after_medium = _peak_rss(pid)
    big = tmp_path / "big.csv"
    rows = _write_csv(big, FILE_BYTES)
    size = big.stat().st_size
    r = post(big)
    assert r.status_code == 201, r.text
    assert r.json()["row_count"] == rows and r.json()["version"] == 3
    after_big = _peak_rss(pid)
    print(
        f"upload {size >> 20} MiB, {rows} rows: server peak RSS grew "
        f"{(after_medium - before) >> 20} MiB for a fifth of it, "
        f"{(after_big - before) >> 20} MiB in all"
    )
    # The file is never held: the peak grows by well under half its size. It still grows
    # somewhat with the file (about 67 MiB for 62 MiB, 120 MiB for 309 MiB when measured), a
    # cost of validation that docs/ingestion.md records and that is left to reduce.
    assert after_big - after_medium < (size - medium.stat().st_size) / 2
    assert after_big - before < size / 2
