"""Docs that cannot drift: every setting, CLI command and route is documented."""

from __future__ import annotations

from pathlib import Path

import fastapi.routing
import typer.main
from fastapi import FastAPI

from govern.api import create_app
from govern.cli.main import app as cli_app
from govern.gateway import Gateway
from govern.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_setting_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    for name in Settings.model_fields:
        assert f"`{name}`" in text, name
        assert f"`GOVERN_{name.upper()}`" in text, name


def _commands(group: typer.Typer) -> list[str]:
    click_group = typer.main.get_command(group)
    out = []

    def walk(cmd: object, prefix: str) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, f"{prefix} {name}".strip())
        else:
            out.append(prefix)

    walk(click_group, "")
    return out


def test_every_cli_command_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    commands = _commands(cli_app)
    assert "token create" in commands
    for command in commands:
        assert f"`govern {command}" in text, command


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route, including those of included routers (FastAPI 0.13x and
    later keep an included router as one entry of ``app.routes``; ``iter_route_contexts``
    flattens it)."""
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    routes = list(flatten(app.routes)) if flatten is not None else list(app.routes)
    out = []
    for route in routes:
        path = getattr(route, "path", None) or ""
        if path.startswith("/docs") or path.startswith("/redoc") or path == "/openapi.json":
            continue
        for method in sorted(set(getattr(route, "methods", None) or ()) - {"HEAD", "OPTIONS"}):
            out.append((method, path))
    return out


def test_every_route_is_documented(sqlite_gateway: Gateway) -> None:
    text = (DOCS / "api.md").read_text()
    routes = _routes(create_app(sqlite_gateway))
    # The walk reaches the routers' routes (else this test would check nothing).
    assert ("GET", "/v1/whoami") in routes and ("DELETE", "/v1/principals/{pid}") in routes
    # A route is documented as `METHOD PATH` or, with its query, `METHOD PATH?...`.
    missing = [
        f"{method} {path}"
        for method, path in routes
        if f"`{method} {path}`" not in text and f"`{method} {path}?" not in text
    ]
    assert missing == []
