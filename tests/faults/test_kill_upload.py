"""SIGKILL of ``govern serve`` while uploads are received and staged: after a restart no half
version, no orphan file, and every acknowledged version is there, whole."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from tests.faults.conftest import GovernServer, stray_files

BOUNDARY = "faultboundary"


def _csv(rows: int) -> bytes:
    lines = ["uid,score,note"] + [f"u{i},{i % 997},note {i % 50}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def _multipart_head(name: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="name"\r\n\r\n{name}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="subject_column"\r\n\r\nuid\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="up.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()


def _multipart(name: str, data: bytes) -> bytes:
    return _multipart_head(name) + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def _post(server: GovernServer, body: bytes | Iterator[bytes]) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/datasets",
        content=body,
        headers={
            **server.headers(server.steward),
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        },
        timeout=120,
    )


def _in_background(call: Callable[[], object]) -> threading.Thread:
    def run() -> None:
        # The gateway is killed under it: that is the point.
        with contextlib.suppress(httpx.HTTPError):
            call()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _kill_when(server: GovernServer, seen: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not seen():
        assert time.monotonic() < deadline, "the kill point was never reached"
        time.sleep(0.002)
    server.kill()


def _files(folder: Path, pattern: str) -> list[Path]:
    return [p for p in folder.glob(pattern) if p.is_file()] if folder.exists() else []


def test_sigkill_while_uploads_stream_and_stage_leaves_no_half_version(
    govern_server: GovernServer,
) -> None:
    server = govern_server
    home = server.home
    server.start()

    # 1. Killed while the body is still arriving (the file part half on disk).
    release = threading.Event()

    def half_sent() -> Iterator[bytes]:
        yield _multipart_head("scores") + _csv(100_000)  # over the 1 MiB write buffer
        release.wait(30)
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    sender = _in_background(lambda: _post(server, half_sent()))
    _kill_when(server, lambda: any(p.stat().st_size > 0 for p in _files(home / "uploads", "*/*")))
    release.set()
    sender.join(10)

    # 2. Killed while the received file is staged as Parquet and checked.
    server.start()
    body = _multipart("scores", _csv(20_000))
    sender = _in_background(lambda: _post(server, body))
    _kill_when(server, lambda: bool(_files(home / "datasets" / "scores", ".upload-*")))
    sender.join(10)

    server.start()
    assert stray_files(server) == {"uploads": [], "unnamed": [], "bad_versions": []}
    headers = server.headers(server.steward)
    assert httpx.get(f"{server.url}/v1/datasets/scores", headers=headers).status_code == 404
    verified = server.cli("ledger", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # Neither killed upload took a version: the next one is version 1, served at once, whole.
    again = _post(server, _multipart("scores", _csv(1_000)))
    assert again.status_code == 201, again.text
    assert (again.json()["version"], again.json()["row_count"]) == (1, 1_000)
    assert stray_files(server) == {"uploads": [], "unnamed": [], "bad_versions": []}
