"""Fault fixtures: a prepared GOVERN_HOME and a real ``govern serve`` process that a test can
SIGKILL and start again over the same state."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from govern.gateway import Gateway
from govern.settings import load_settings
from govern.store import Database
from govern.store.migrate import upgrade
from govern.store.models import LedgerEntry
from tests.conftest import TEST_ACTOR, free_port
from tests.unit.flight.serving import load_small_demo

GOVERN = str(Path(sys.executable).with_name("govern"))
# A decision every demo trainer is allowed (a row filter and a masked column apply).
ALLOWED = {
    "action": "read",
    "resource": {"dataset": "patient_notes"},
    "context": {"purpose": "training"},
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here carries the ``faults`` marker (``-m faults`` runs them alone)."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.faults)


@dataclass
class GovernServer:
    """``govern serve`` over one GOVERN_HOME; ``kill`` is SIGKILL (no shutdown code runs),
    ``start`` again serves the same state on a new port."""

    home: Path
    env: dict[str, str]
    trainer: str = ""
    steward: str = ""
    url: str = ""
    flight_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    _logs: list[Path] = field(default_factory=list)

    def start(self, timeout: float = 60) -> str:
        port, self.flight_port = free_port(), free_port()
        log = self.home.parent / f"serve-{len(self._logs)}.log"
        self._logs.append(log)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [GOVERN, "serve", "--port", str(port), "--flight-port", str(self.flight_port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"govern serve exited {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"govern serve not ready in {timeout} s:\n{self.log()}")

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(timeout=10) == -signal.SIGKILL

    def halt(self) -> None:
        """End the server at a test's end without waiting for a graceful stop."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return "".join(p.read_text(errors="replace")[-4000:] for p in self._logs if p.exists())

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [GOVERN, *args], env=self.env, capture_output=True, text=True, timeout=120, check=False
        )

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def database(self) -> Database:
        """An unguarded handle on the store, to read what a crash left; dispose after use."""
        return Database(load_settings(home=self.home, **self._overrides()).resolved_database_url)

    def entries(self) -> dict[int, LedgerEntry]:
        db = self.database()
        try:
            with db.session() as s:
                return {e.idx: e for e in s.scalars(select(LedgerEntry))}
        finally:
            db.dispose()

    def _overrides(self) -> dict[str, object]:
        url = self.env.get("GOVERN_DATABASE_URL")
        return {"database_url": url} if url else {}


def prepare(home: Path, database_url: str | None = None, **env: str) -> GovernServer:
    """Migrate, load the small demo, issue a trainer's and a steward's token; the returned
    server is not started."""
    overrides: dict[str, object] = {"database_url": database_url} if database_url else {}
    settings = load_settings(
        home=home, config=home / "none.toml", llm_backend="none", jobs_backend="none", **overrides
    )
    upgrade(settings.resolved_database_url)
    gateway = Gateway.open(settings)
    try:
        load_small_demo(gateway)
        trainer = gateway.commands.issue_token("demo-trainer", "trainer", TEST_ACTOR).token
        steward = gateway.commands.issue_token("demo-steward", "steward", TEST_ACTOR).token
    finally:
        gateway.close()
    full_env = {
        **os.environ,
        "GOVERN_HOME": str(home),
        "GOVERN_CONFIG": str(home / "none.toml"),
        "GOVERN_LLM_BACKEND": "none",
        "GOVERN_JOBS_BACKEND": "none",
        "GOVERN_LOG_LEVEL": "warning",
        **env,
    }
    if database_url:
        full_env["GOVERN_DATABASE_URL"] = database_url
    else:
        full_env.pop("GOVERN_DATABASE_URL", None)
    return GovernServer(home, full_env, trainer, steward)


@pytest.fixture
def govern_server(tmp_path: Path) -> Iterator[GovernServer]:
    """A prepared SQLite GOVERN_HOME and its ``govern serve`` (started by the test)."""
    server = prepare(tmp_path / "home")
    try:
        yield server
    finally:
        server.halt()


def stray_files(server: GovernServer) -> dict[str, list[str]]:
    """What a crash must not leave: files under uploads/, files under datasets/ that no
    version row names, and version rows whose file is missing, altered or not final."""
    import hashlib

    from govern.store.models import DatasetVersion

    db = server.database()
    try:
        with db.session() as s:
            versions = list(s.scalars(select(DatasetVersion)))
    finally:
        db.dispose()
    named = {Path(v.path).resolve() for v in versions}
    uploads = server.home / "uploads"
    datasets = server.home / "datasets"
    bad_versions = []
    for v in versions:
        path = Path(v.path)
        if v.state not in ("active", "quarantined", "retired"):
            bad_versions.append(f"{path.name}: state {v.state}")
        elif not path.is_file():
            bad_versions.append(f"{path.name}: missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != v.sha256:
            bad_versions.append(f"{path.name}: sha256 differs")
    return {
        "uploads": sorted(str(p) for p in uploads.rglob("*") if p.is_file()),
        "unnamed": sorted(
            str(p) for p in datasets.rglob("*") if p.is_file() and p.resolve() not in named
        ),
        "bad_versions": bad_versions,
    }


PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (initdb in a temporary folder, a free port), so
    it can be stopped and started without touching the shared server."""

    folder: Path
    port: int

    def _ctl(self, *args: str) -> None:
        # The server's own output goes to its log file: a pipe it inherited would never close.
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN[-1] / "pg_ctl"), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "postgres.log")
        self._ctl("-D", str(self.folder / "data"), "-l", log, "-o", options, "-w", "start")

    def stop(self) -> None:
        """As a crash or an operator's immediate stop: every connection is cut."""
        self._ctl("-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    import shutil
    import tempfile

    if not PG_BIN or shutil.which("runuser") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("PostgreSQL server binaries are required in CI")
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql")
    # Outside pytest's tmp_path: initdb runs as postgres, which cannot enter root's folders.
    folder = Path(tempfile.mkdtemp(prefix="govern-pg-"))
    shutil.chown(folder, "postgres", "postgres")
    subprocess.run(
        [
            "runuser", "-u", "postgres", "--", str(PG_BIN[-1] / "initdb"),
            "-D", str(folder / "data"), "-A", "trust", "-U", "postgres", "--no-sync",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )  # fmt: skip
    pg = PrivatePostgres(folder, free_port())
    pg.start()
    try:
        import psycopg

        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{pg.port}/postgres", autocommit=True
        ) as conn:
            conn.execute("CREATE DATABASE govern")
        yield pg
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A folder on a tmpfs of 8 MiB of its own: a disk that fills up."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"cannot mount a tmpfs: {mounted.stderr}")
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
