"""Two gateway processes sharing the local PostgreSQL: a policy change on one reaches the other
through the store watcher (LISTEN/NOTIFY), without a restart."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

GOVERN = str(Path(sys.executable).with_name("govern"))
SECRET = "replica-test-secret-" + "x" * 32


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


@pytest.fixture
def replicas(postgres_url: str, tmp_path: Path) -> Iterator[tuple[str, str, dict[str, str]]]:
    env = {
        **os.environ,
        "GOVERN_DATABASE_URL": postgres_url,
        "GOVERN_SIGNING_SECRET": SECRET,
        "GOVERN_POLICY_POLL_SECONDS": "30",  # long: the change must come by NOTIFY
        "GOVERN_CONFIG": str(tmp_path / "none.toml"),
    }
    home = tmp_path / "shared"
    subprocess.run([GOVERN, "db", "upgrade"], env={**env, "GOVERN_HOME": str(home)}, check=True)
    subprocess.run(
        [GOVERN, "principal", "add", "st", "--role", "steward"],
        env={**env, "GOVERN_HOME": str(home)},
        check=True,
    )
    token = subprocess.run(
        [GOVERN, "token", "create", "--subject", "st", "--role", "steward"],
        env={**env, "GOVERN_HOME": str(home)},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    procs, urls = [], []
    for name in ("a", "b"):
        port = free_port()
        procs.append(
            subprocess.Popen(
                [GOVERN, "serve", "--port", str(port), "--flight-port", str(free_port())],
                env={**env, "GOVERN_HOME": str(home), "GOVERN_LOG_LEVEL": "warning"},
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
        del name
    try:
        for url, proc in zip(urls, procs, strict=True):
            wait_ready(url, proc)
        yield urls[0], urls[1], {"Authorization": f"Bearer {token}"}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)


@pytest.mark.postgres
def test_a_policy_change_on_one_replica_reaches_the_other(
    replicas: tuple[str, str, dict[str, str]],
) -> None:
    a, b, headers = replicas
    assert httpx.get(f"{b}/v1/policies", headers=headers).json()["version"] is None
    rules = [["p", "r.sub.role == 'trainer'", "*", "read", "training", "True", "allow"]]
    r = httpx.put(f"{a}/v1/policies", json={"rules": rules}, headers=headers)
    assert r.status_code == 200, r.text
    version = r.json()["version"]
    deadline = time.monotonic() + 10
    seen = None
    while time.monotonic() < deadline:
        seen = httpx.get(f"{b}/v1/policies", headers=headers).json()["version"]
        if seen == version:
            break
        time.sleep(0.1)
    assert seen == version
