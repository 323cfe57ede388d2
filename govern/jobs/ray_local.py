"""A one-node Ray cluster on loopback, for development, tests and benchmarks.

``local_ray_cluster()`` runs ``ray start --head --block`` in its own process group and temp
dir and yields the Jobs API address; on exit it ends that process group only, so other Ray
clusters on the machine are left alone (``ray stop`` would stop them all). The job's ``python``
is the one of the environment govern runs in (its bin directory is put first on PATH).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from govern.errors import JobBackendUnavailable

__all__ = ["local_ray_cluster"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_ray_cluster(num_cpus: int = 1, timeout: float = 120.0) -> Iterator[str]:
    ray = Path(sys.executable).with_name("ray")
    port, dashboard = _free_port(), _free_port()
    # Short: Ray's unix socket paths under it must stay within about 100 characters.
    temp = Path(tempfile.mkdtemp(prefix="rayg-"))
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "PATH": f"{ray.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    # Ray's CLI flags, one option per line.
    args = [
        *("start", "--head", "--block", "--disable-usage-stats"),
        *("--node-ip-address", "127.0.0.1", "--port", str(port)),
        *("--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard)),
        *("--num-cpus", str(num_cpus), "--object-store-memory", str(100 << 20)),
        *("--temp-dir", str(temp)),
    ]
    proc = subprocess.Popen(  # noqa: S603 - the ray CLI of this environment
        [str(ray), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise JobBackendUnavailable(f"ray start exited with {proc.returncode}")
            try:
                # The version answers before the Jobs API can take jobs; ask the latter.
                with urllib.request.urlopen(f"{address}/api/jobs/", timeout=5):  # noqa: S310
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise JobBackendUnavailable(f"Ray did not come up at {address}") from None
                time.sleep(0.2)
        yield address
    finally:
        # The leader and its log monitor can take 20 s and more to honour SIGTERM; a cluster
        # that only this process uses is then simply killed.
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
            time.sleep(1.0)  # the group's other processes end just after the leader
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
