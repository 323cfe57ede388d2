"""``govern compliance ...`` and ``govern review ...``: legal checks and the review queue."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from govern.compliance import ModelHolder, open_assessor
from govern.errors import BadRequest, ModelUnavailable
from govern.gateway import Gateway
from govern.settings import load_settings

__all__ = ["compliance_app", "review_app"]

compliance_app = typer.Typer(help="Compliance checks against the legal rule library.",
                             no_args_is_help=True)  # fmt: skip
review_app = typer.Typer(help="The compliance review queue.", no_args_is_help=True)

out = Console()
err = Console(stderr=True)

_STYLE = {"compliant": "green", "non_compliant": "red", "needs_review": "yellow"}


def _open() -> Gateway:
    return Gateway.open(load_settings())


def _parse_facts(items: list[str] | None) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BadRequest(f"--fact takes key=value, not {item[:100]!r}")
        facts[key.strip()] = value.strip()
    return facts


def _wait_for_model(holder: ModelHolder | None, timeout: float) -> None:
    """A one-off command waits for the model (a server would answer needs_review meanwhile)."""
    if holder is None:
        return
    try:
        model = holder.get()
    except ModelUnavailable as exc:
        err.print(f"[yellow]no model:[/yellow] {exc.message}", highlight=False)
        return
    model.start()
    deadline = time.monotonic() + timeout
    with err.status("loading the language model ..."):
        while not model.ready() and time.monotonic() < deadline:
            time.sleep(0.2)
    if not model.ready():
        err.print("[yellow]the model is not ready: judgements it is needed for are "
                  "needs_review[/yellow]")  # fmt: skip


@compliance_app.command("rules")
def rules() -> None:
    """The legal rule library."""
    gateway = _open()
    table = Table("id", "law", "article", "title", "facts")
    table.columns[0].no_wrap = True
    for r in gateway.queries.rules():
        table.add_row(r.id, r.law, r.article, r.title, ", ".join(r.facts))
    out.print(table)
    gateway.close()


@compliance_app.command("check")
def check(
    purpose: Annotated[str, typer.Option(help="The purpose the data is to be used for.")],
    dataset: Annotated[str | None, typer.Option(help="A dataset in the catalog.")] = None,
    description: Annotated[
        str | None, typer.Option(help="Free text about the use (read as data, never obeyed).")
    ] = None,
    fact: Annotated[
        list[str] | None, typer.Option("--fact", help="A structured fact key=value; repeatable.")
    ] = None,
    rule: Annotated[
        list[str] | None, typer.Option("--rule", help="Check only this rule; repeatable.")
    ] = None,
    model_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the model to load.")
    ] = 120.0,
) -> None:
    """Assess a use of a dataset; prints each rule's verdict, confidence and rationale."""
    facts = _parse_facts(fact)
    if description is not None:
        facts["description"] = description
    gateway = _open()
    try:
        if description and description.strip():
            # Only a description needs the model.
            _wait_for_model(gateway.queries.language_model(), model_timeout)
        with err.status("assessing ..."):
            info = gateway.commands.assess(
                dataset, purpose, rule or None, facts, gateway.settings.cli_actor
            )
        table = Table("rule", "verdict", "confidence", "rationale", show_lines=True)
        table.columns[0].no_wrap = table.columns[1].no_wrap = True
        for v in info.verdicts:
            style = _STYLE.get(v["verdict"], "")
            readers = ", ".join(v.get("readers", []))
            table.add_row(
                v["rule"], f"[{style}]{v['verdict']}[/{style}]", f"{v['confidence']:.2f}",
                v["rationale"] + (f"\n[dim]read by: {escape(readers)}[/dim]" if readers else ""),
            )  # fmt: skip
        out.print(f"assessment {info.id} (log entry {info.log_index})", highlight=False)
        out.print(table)
        reviews = [r.id for r in info.reviews]
        if reviews:
            out.print(f"{len(reviews)} verdict(s) wait for review: {', '.join(reviews)}")
    finally:
        gateway.close()


@compliance_app.command("calibrate")
def calibrate(
    cases: Annotated[
        Path | None,
        typer.Option(help="Directory of labelled cases (default tests/compliance/cases)."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Calibration file to write (default: the configured one).")
    ] = None,
    model_timeout: Annotated[float, typer.Option(help="Seconds to wait for the model.")] = 300.0,
) -> None:
    """Fit the model's answer calibration on the fit split of the labelled cases."""
    from govern.compliance import rules_dir
    from govern.compliance.calibrate import calibrate as run_calibration
    from govern.compliance.cases import default_cases_dir, load_cases

    s = load_settings()
    # Calibration reads labelled cases and writes a file; it needs the assessor, not a gateway.
    assessor, holder = open_assessor(s)
    _wait_for_model(holder, model_timeout)
    case_list = load_cases(cases or default_cases_dir(), assessor.library)
    target = output or s.compliance_calibration_file or rules_dir(s) / "calibration.json"
    with Progress(
        TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err,
    ) as bar:  # fmt: skip
        task = bar.add_task("scoring", total=None)
        result = run_calibration(
            assessor,
            case_list,
            assessor.model_name(),
            previous=assessor.calibration,
            progress=lambda i, n: bar.update(task, completed=i, total=n),
            score_cache=s.home / "compliance" / "calibration-scores.json",
        )
    result.calibration.save(target)
    out.print_json(data=result.summary())
    err.print(f"wrote {target}", highlight=False)


@compliance_app.command("calibrate-prose")
def calibrate_prose(
    cases: Annotated[
        Path | None,
        typer.Option(help="Directory of prose cases (default tests/compliance/prose)."),
    ] = None,
) -> None:
    """Fit which facts the prose reader may state, on the fit split of the prose cases."""
    from govern.compliance import rules_dir
    from govern.compliance.calibrate import calibrate_prose as run
    from govern.compliance.cases import default_prose_dir, load_cases

    s = load_settings()
    assessor, _ = open_assessor(s)  # no model: the reader and the rule conditions suffice
    trust = run(assessor, load_cases(cases or default_prose_dir(), assessor.library))
    target = rules_dir(s) / "prose_trust.json"
    trust.save(target)
    out.print_json(data={"trusted": sorted(trust.trusted), "fit": trust.fit})
    err.print(f"wrote {target}", highlight=False)


@review_app.command("list")
def review_list(
    all_: Annotated[bool, typer.Option("--all", help="Decided reviews too.")] = False,
) -> None:
    """Open reviews (verdicts waiting for a person)."""
    gateway = _open()
    table = Table("id", "rule", "dataset", "purpose", "state", "verdict", "rationale")
    table.columns[0].no_wrap = table.columns[1].no_wrap = True
    for r in gateway.queries.reviews(None if all_ else "open"):
        table.add_row(
            r.id, r.rule, r.dataset or "-", r.purpose or "-", r.state, r.verdict or "-",
            r.rationale[:120],
        )  # fmt: skip
    out.print(table)
    gateway.close()


@review_app.command("decide")
def review_decide(
    rid: Annotated[str, typer.Argument(help="Review id.")],
    verdict: Annotated[str, typer.Option(help="compliant or non_compliant.")],
    note: Annotated[str, typer.Option(help="Why; kept in the access log.")] = "",
    reviewer: Annotated[
        str | None, typer.Option(help="Who decides (recorded); default the CLI's actor.")
    ] = None,
) -> None:
    """Decide an open review; the verdict then governs decisions for its dataset and purpose."""
    gateway = _open()
    try:
        info = gateway.commands.decide_review(
            rid, verdict, note, reviewer or gateway.settings.cli_actor
        )
        out.print(f"{info.id}: {info.rule} decided {info.verdict} (log entry {info.log_index})",
                  highlight=False)  # fmt: skip
    finally:
        gateway.close()
