"""`govern dataset ...` as a steward runs it: add, versions, accept, tags, suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tests.unit.quality.planted import measurements, with_column

GOVERN = str(Path(sys.executable).with_name("govern"))


def run(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GOVERN_HOME": str(home), "GOVERN_CONFIG": str(home / "none.toml")}
    env.pop("GOVERN_DATABASE_URL", None)
    env["GOVERN_CHAIN_BACKEND"] = "none"
    return subprocess.run(
        [GOVERN, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
        input=stdin,
    )


def test_a_steward_adds_checks_accepts_and_tags_from_the_cli(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run(home, "db", "upgrade").returncode == 0
    first = measurements(500).append_column(
        "contact", pa.array([f"p{i}@example.org" for i in range(500)])
    )
    pacsv.write_csv(first, tmp_path / "v1.csv")
    r = run(
        home,
        "dataset",
        "add",
        "vitals",
        str(tmp_path / "v1.csv"),
        "--subject-column",
        "patient_id",
        "--unique",
        "reading_id",
    )
    assert r.returncode == 0, r.stderr
    assert "vitals v1: 500 rows, active; quality passed" in r.stderr
    assert "proposed tag: contact -> pii.email" in r.stderr
    assert "writing version" in r.stderr  # the progress bar

    rate = first.column("heart_rate").to_pylist()
    rate[2] = -40
    pq.write_table(with_column(first, "heart_rate", rate), tmp_path / "v2.parquet")
    r = run(
        home,
        "dataset",
        "add",
        "vitals",
        str(tmp_path / "v2.parquet"),
        "--subject-column",
        "patient_id",
    )
    assert r.returncode == 0, r.stderr
    assert "quarantined; quality FAILED" in r.stderr and "heart_rate" in r.stderr

    r = run(home, "dataset", "versions", "vitals")
    assert r.returncode == 0
    lines = [ln for ln in r.stdout.splitlines() if "│" in ln]
    assert any("quarantined" in ln and "fail" in ln for ln in lines)
    assert "v1" in run(home, "dataset", "show", "vitals").stdout

    assert run(home, "dataset", "accept", "vitals", "2").returncode == 0
    assert "v2" in run(home, "dataset", "show", "vitals").stdout
    r = run(home, "dataset", "accept", "vitals", "2")
    assert r.returncode == 2 and "only quarantined" in r.stderr

    r = run(home, "dataset", "tags", "show", "vitals")
    assert "pii.email" in r.stdout and "no (applied" in r.stdout
    r = run(home, "dataset", "tags", "confirm", "vitals", "--column", "contact")
    assert r.returncode == 0 and "confirmed 1" in r.stderr
    r = run(home, "dataset", "tags", "set", "vitals", "ward", "pii.quasi")
    assert r.returncode == 0 and "vitals.ward: pii.quasi" in r.stderr
    r = run(home, "dataset", "tags", "set", "vitals", "nope", "x")
    assert r.returncode == 2

    suite = json.loads(run(home, "dataset", "suite", "show", "vitals").stdout)
    assert any(e["type"] == "expect_column_values_to_be_unique" for e in suite["expectations"])
    suite["expectations"] = suite["expectations"][:3]
    r = run(home, "dataset", "suite", "set", "vitals", "-", stdin=json.dumps(suite))
    assert r.returncode == 0 and "suite of 3 expectations" in r.stderr
    r = run(home, "dataset", "suite", "set", "vitals", "-", stdin="{not json")
    assert r.returncode == 2 and "not JSON" in r.stderr

    r = run(home, "dataset", "add", "../x", str(tmp_path / "v1.csv"), "--subject-column", "a")
    assert r.returncode == 2 and "dataset names" in r.stderr and "Traceback" not in r.stderr
