"""Schemathesis, a client nobody here wrote, against the live gateway: every operation of the
OpenAPI document, every phase (examples, coverage, fuzzing, stateful), a fixed seed and a
bounded time, as an admin over the demo. No server error, no response outside its schema, no
status code or content type the document does not declare, a 405 naming the allowed methods."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from govern.demo import load_demo
from govern.gateway import Gateway
from govern.settings import load_settings
from govern.store.migrate import upgrade
from tests.conftest import TEST_ACTOR, serve_rest

SEED = 20261205
SECONDS = 90
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
        "unsupported_method",
    )
)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    settings = load_settings(
        home=tmp_path / "home",
        config=tmp_path / "none.toml",
        llm_backend="none",
        jobs_backend="none",
        erasure_rewrite=False,
    )
    upgrade(settings.resolved_database_url)
    gateway = Gateway.open(settings)
    load_demo(gateway, scale=0.02)
    token = gateway.commands.issue_token("demo-admin", "admin", TEST_ACTOR, 3600).token
    try:
        with serve_rest(gateway) as url:
            yield url, token
    finally:
        gateway.close()


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_undeclared_response(
    served: tuple[str, str], tmp_path: Path
) -> None:
    url, token = served
    st = str(Path(sys.executable).with_name("st"))
    result = subprocess.run(
        [
            st,
            "run",
            f"{url}/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--seed",
            str(SEED),
            "--max-time",
            str(SECONDS),
            "--workers",
            "1",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--checks",
            CHECKS,
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=SECONDS + 240,
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    tail = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0, tail
    # Every operation of the document was exercised, not only the ones that answered.
    paths = httpx.get(f"{url}/openapi.json").json()["paths"]
    operations = sum(len([m for m in ops if m != "parameters"]) for ops in paths.values())
    assert f"Tested: {operations}" in tail, tail
