"""``govern``: serve, migrate, load the demo, issue tokens, test policies, verify the ledger.

Every command reports a GovernError as one line on stderr and exits non-zero: 2 for bad input
(a 4xx kind of error), 1 for anything else.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from govern.errors import BadRequest, GovernError
from govern.gateway import Gateway
from govern.settings import Settings, load_settings

__all__ = ["app", "main"]

app = typer.Typer(
    name="govern",
    help="Data-governance gateway for ML training data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Metadata store.", no_args_is_help=True)
demo_app = typer.Typer(help="Demo datasets, principals and policies.", no_args_is_help=True)
token_app = typer.Typer(help="Bearer tokens.", no_args_is_help=True)
principal_app = typer.Typer(help="Principals (people and services).", no_args_is_help=True)
dataset_app = typer.Typer(help="Datasets in the catalog.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(demo_app, name="demo")
app.add_typer(token_app, name="token")
app.add_typer(principal_app, name="principal")
app.add_typer(dataset_app, name="dataset")

out = Console()
err = Console(stderr=True)


def settings() -> Settings:
    return load_settings()


def open_gateway() -> Gateway:
    return Gateway.open(settings())


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="REST bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="REST port.")] = None,
    flight_port: Annotated[int | None, typer.Option(help="Arrow Flight port.")] = None,
) -> None:
    """Serve the REST API and console (and Arrow Flight, once that part is enabled)."""
    import uvicorn

    from govern.api import create_app
    from govern.store.migrate import upgrade

    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if flight_port is not None:
        overrides["flight_port"] = flight_port
    s = load_settings(**overrides)
    upgrade(s.resolved_database_url)
    gateway = Gateway.open(s)
    uvicorn.run(create_app(gateway), host=s.host, port=s.port, log_level=s.log_level)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply database migrations."""
    from govern.store.migrate import upgrade

    s = settings()
    upgrade(s.resolved_database_url, revision)
    err.print(f"database at revision {revision}")


@demo_app.command("load")
def demo_load(
    scale: Annotated[float, typer.Option(min=0.001, max=20.0, help="Row count multiplier.")] = 1.0,
) -> None:
    """Load the demo datasets, principals and policies (skips what exists)."""
    from govern.demo import load_demo

    gateway = open_gateway()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done)

        written = load_demo(gateway, progress, scale=scale)
    err.print(f"demo loaded ({', '.join(written) or 'nothing new'})")
    gateway.close()


@token_app.command("create")
def token_create(
    subject: Annotated[str, typer.Option("--subject", help="Principal id.")],
    role: Annotated[str, typer.Option("--role", help="One of the principal's roles.")],
    ttl: Annotated[int | None, typer.Option(min=1, help="Lifetime in seconds.")] = None,
) -> None:
    """Issue a bearer token; prints only the token."""
    gateway = open_gateway()
    typer.echo(gateway.tokens.issue(subject, role, ttl))
    gateway.close()


@token_app.command("revoke")
def token_revoke(
    jti: Annotated[str | None, typer.Argument(help="Token id (jti).")] = None,
    subject: Annotated[
        str | None, typer.Option(help="Revoke every token of this principal.")
    ] = None,
) -> None:
    """Revoke one token, or every token of a principal."""
    gateway = open_gateway()
    if subject:
        err.print(f"revoked {gateway.tokens.revoke_all(subject)} token(s)")
    elif jti:
        gateway.tokens.revoke(jti)
        err.print("revoked")
    else:
        raise BadRequest("give a token id or --subject")
    gateway.close()


@principal_app.command("add")
def principal_add(
    pid: Annotated[str, typer.Argument(help="Principal id.")],
    role: Annotated[list[str], typer.Option("--role", help="Role; repeat for several.")],
    attr: Annotated[
        list[str] | None, typer.Option("--attr", help="Attribute as key=value; repeatable.")
    ] = None,
) -> None:
    """Create or replace a principal with roles and attributes."""
    attributes: dict[str, object] = {}
    for item in attr or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise BadRequest(f"attribute {item!r} is not key=value")
        attributes[key] = _parse_value(value)
    gateway = open_gateway()
    p = gateway.principals.upsert(pid, role, attributes)
    err.print(f"principal {p.id}: roles {', '.join(p.roles)}")
    gateway.close()


def _parse_value(value: str) -> str | int | float | bool:
    if value in ("true", "false"):
        return value == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


@principal_app.command("list")
def principal_list() -> None:
    """List principals."""
    gateway = open_gateway()
    table = Table("id", "roles", "attributes", "disabled")
    for p in gateway.principals.all():
        table.add_row(p.id, ", ".join(p.roles), str(dict(p.attributes)), str(p.disabled))
    out.print(table)
    gateway.close()


@dataset_app.command("list")
def dataset_list() -> None:
    """List datasets with their newest active version."""
    gateway = open_gateway()
    table = Table("name", "version", "rows", "subject column", "columns")
    for d in gateway.catalog.all():
        table.add_row(
            d.name, str(d.version), str(d.row_count), d.subject_column, str(len(d.columns))
        )
    out.print(table)
    gateway.close()


@dataset_app.command("show")
def dataset_show(name: Annotated[str, typer.Argument(help="Dataset name.")]) -> None:
    """Show a dataset's columns, types and tags."""
    gateway = open_gateway()
    d = gateway.catalog.get(name)
    out.print(f"{d.name} v{d.version}: {d.row_count} rows, subject column {d.subject_column}")
    table = Table("column", "type", "tags")
    for c in d.columns:
        table.add_row(c.name, c.type, ", ".join(c.tags))
    out.print(table)
    gateway.close()


def main() -> None:
    try:
        app()
    except GovernError as exc:
        err.print(f"[red]error:[/red] {exc.message}", highlight=False)
        if exc.details:
            err.print(f"  details: {exc.details}", highlight=False)
        sys.exit(2 if 400 <= exc.http_status < 500 else 1)
