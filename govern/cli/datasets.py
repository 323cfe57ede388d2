"""``govern dataset``: list, show, add versions, accept quarantined ones, tags and suites."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from govern.errors import BadRequest, NotFound
from govern.gateway import Gateway
from govern.settings import load_settings

__all__ = ["dataset_app"]

dataset_app = typer.Typer(help="Datasets in the catalog.", no_args_is_help=True)
tags_app = typer.Typer(help="Column tags: show, confirm, set.", no_args_is_help=True)
suite_app = typer.Typer(help="A dataset's quality suite.", no_args_is_help=True)
dataset_app.add_typer(tags_app, name="tags")
dataset_app.add_typer(suite_app, name="suite")

out = Console()
err = Console(stderr=True)


def _open() -> Gateway:
    return Gateway.open(load_settings())


def _actor(gateway: Gateway) -> str:
    return gateway.settings.cli_actor


@dataset_app.command("list")
def dataset_list() -> None:
    """List datasets with their newest active version."""
    gateway = _open()
    table = Table("name", "version", "rows", "subject column", "columns")
    for d in gateway.queries.datasets():
        table.add_row(
            d.name, str(d.version), str(d.row_count), d.subject_column, str(len(d.columns))
        )
    out.print(table)
    gateway.close()


@dataset_app.command("show")
def dataset_show(name: Annotated[str, typer.Argument(help="Dataset name.")]) -> None:
    """Show a dataset's columns, types and tags (* marks unconfirmed proposals)."""
    gateway = _open()
    d = gateway.queries.dataset(name)
    out.print(f"{d.name} v{d.version}: {d.row_count} rows, subject column {d.subject_column}")
    table = Table("column", "type", "tags")
    for c in d.columns:
        table.add_row(
            c.name,
            c.type,
            ", ".join(t.tag + ("" if t.confirmed else "*") for t in c.tag_details),
        )
    out.print(table)
    gateway.close()


@dataset_app.command("versions")
def dataset_versions(name: Annotated[str, typer.Argument(help="Dataset name.")]) -> None:
    """Every version of a dataset with its state and quality verdict."""
    gateway = _open()
    table = Table("version", "state", "rows", "quality", "failed expectations")
    for v in gateway.queries.versions(name):
        verdict, failed = "-", ""
        try:
            r = gateway.queries.quality_result(name, v.version)
            verdict = "pass" if r.success else "fail"
            if r.accepted_by:
                verdict += f" (accepted by {r.accepted_by})"
            failed = ", ".join(
                f"{x['type'].removeprefix('expect_')}({x['kwargs'].get('column', '')})"
                for x in r.result.get("results", [])
                if not x["success"]
            )
        except NotFound:
            pass
        table.add_row(str(v.version), v.state, str(v.row_count), verdict, failed)
    out.print(table)
    gateway.close()


@dataset_app.command("add")
def dataset_add(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    file: Annotated[Path, typer.Argument(help="Parquet or CSV file.", exists=True, dir_okay=False)],
    subject_column: Annotated[
        str, typer.Option("--subject-column", help="Column naming each row's data subject.")
    ],
    description: Annotated[str, typer.Option(help="What the dataset holds.")] = "",
    unique: Annotated[
        list[str] | None,
        typer.Option("--unique", help="Column declared unique (first version); repeatable."),
    ] = None,
) -> None:
    """Register FILE as a new version of NAME: validate it, propose tags, log it."""
    gateway = _open()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err,
    ) as bar:
        tasks: dict[str, TaskID] = {}
        labels = {"write": "writing version", "validate": "quality suite", "detect": "tagging"}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(labels.get(stage, stage), total=max(total, 1))
            bar.update(tasks[stage], completed=done, total=max(total, 1))

        result = gateway.commands.ingest(
            name,
            file,
            subject_column,
            _actor(gateway),
            filename=file.name,
            description=description,
            unique_columns=unique or [],
            progress=progress,
        )
    info = result.info
    report = result.report
    err.print(
        f"{info.name} v{info.version}: {info.row_count} rows, {info.state}; quality "
        f"{'passed' if report.success else 'FAILED'} ({len(report.failed)} of "
        f"{len(report.results)} expectations failed)",
        highlight=False,
    )
    for f in report.failed:
        err.print(
            f"  failed: {f['type']} {f['kwargs'].get('column', '')} "
            f"unexpected={f.get('unexpected_count')} rows={(f.get('unexpected_row_ids') or [])[:5]}"
            + (f" error={f['exception']}" if f.get("exception") else ""),
            highlight=False,
        )
    for p in result.proposals:
        err.print(
            f"  proposed tag: {p.column} -> {p.tag} ({p.detector}, {p.score})", highlight=False
        )
    gateway.close()


@dataset_app.command("accept")
def dataset_accept(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    version: Annotated[int, typer.Argument(help="Quarantined version to serve.")],
) -> None:
    """Serve a version that failed its quality suite (logged)."""
    gateway = _open()
    info = gateway.commands.accept_version(name, version, _actor(gateway))
    err.print(f"{info.name} v{info.version} is {info.state}")
    gateway.close()


@tags_app.command("show")
def tags_show(name: Annotated[str, typer.Argument(help="Dataset name.")]) -> None:
    """Each column's tags with their source, detector, score and whether confirmed."""
    gateway = _open()
    info = gateway.queries.versions(name)[-1]
    table = Table("column", "tag", "source", "detector", "score", "confirmed")
    for c in info.columns:
        for t in c.tag_details:
            table.add_row(
                c.name,
                t.tag,
                t.source,
                t.detector or "",
                "" if t.score is None else f"{t.score:.2f}",
                "yes" if t.confirmed else "no (applied until removed)",
            )
    out.print(table)
    gateway.close()


@tags_app.command("set")
def tags_set(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    column: Annotated[str, typer.Argument(help="Column.")],
    tags: Annotated[
        list[str] | None, typer.Argument(help="The column's tags; none clears.")
    ] = None,
) -> None:
    """Set a column's tags exactly (confirms the listed ones, removes the rest)."""
    gateway = _open()
    info = gateway.commands.set_tags(name, column, tags or [], _actor(gateway))
    err.print(f"{name}.{column}: {', '.join(info.column(column).tags) or '(no tags)'}")
    gateway.close()


@tags_app.command("confirm")
def tags_confirm(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    column: Annotated[
        list[str] | None, typer.Option("--column", help="Only this column; repeatable.")
    ] = None,
) -> None:
    """Confirm the detector's proposals as they are (all columns, or those named)."""
    gateway = _open()
    info = gateway.queries.versions(name)[-1]
    confirmed = 0
    for c in info.columns:
        if column and c.name not in column:
            continue
        if any(not t.confirmed for t in c.tag_details):
            gateway.commands.set_tags(name, c.name, list(c.tags), _actor(gateway))
            confirmed += sum(not t.confirmed for t in c.tag_details)
    err.print(f"confirmed {confirmed} proposed tag(s)")
    gateway.close()


@suite_app.command("show")
def suite_show(name: Annotated[str, typer.Argument(help="Dataset name.")]) -> None:
    """Print the dataset's suite as JSON."""
    gateway = _open()
    s = gateway.queries.suite(name)
    typer.echo(json.dumps({"expectations": s.suite["expectations"]}, indent=2))
    gateway.close()


@suite_app.command("set")
def suite_set(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    file: Annotated[Path, typer.Argument(help="Suite JSON file; - for stdin.")],
) -> None:
    """Replace the dataset's suite (checked with Great Expectations; logged)."""
    text = typer.get_text_stream("stdin").read() if str(file) == "-" else file.read_text()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the suite is not JSON: {exc}") from exc
    gateway = _open()
    s = gateway.commands.put_suite(name, doc, _actor(gateway))
    err.print(f"{name}: suite of {len(s.suite['expectations'])} expectations")
    gateway.close()
