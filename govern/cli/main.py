"""``govern``: serve, migrate, load the demo, issue tokens, test policies, verify the ledger.

Every command reports a GovernError as one line on stderr and exits non-zero: 2 for bad input
(a 4xx kind of error), 1 for anything else.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, Any

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

from govern.cli.compliance import compliance_app, review_app
from govern.cli.datasets import dataset_app
from govern.cli.jobs import jobs_app, jobs_table
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
policy_app = typer.Typer(help="Policy sets: show, load, test.", no_args_is_help=True)
erasure_app = typer.Typer(help="Erasure requests for data subjects.", no_args_is_help=True)
ledger_app = typer.Typer(help="The access log: verify, prove, export.", no_args_is_help=True)
model_app = typer.Typer(help="The compliance checks' language model.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(model_app, name="model")
app.add_typer(demo_app, name="demo")
app.add_typer(token_app, name="token")
app.add_typer(principal_app, name="principal")
app.add_typer(dataset_app, name="dataset")
app.add_typer(policy_app, name="policy")
app.add_typer(ledger_app, name="ledger")
app.add_typer(erasure_app, name="erasure")
app.add_typer(jobs_app, name="jobs")
app.add_typer(compliance_app, name="compliance")
app.add_typer(review_app, name="review")

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
    """Serve the REST API and console on H:P, and Arrow Flight on H:F."""
    import uvicorn

    from govern.api import create_app
    from govern.flight import FlightServer
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
    _key_erasure_requests(s)
    gateway = Gateway.open(s, watch=True)
    try:
        # Flight serves from gRPC's own threads once constructed; uvicorn holds the main thread
        # and returns on SIGINT/SIGTERM, then Flight stops and the gateway closes, in that order.
        flight = FlightServer(gateway, host=s.host, port=s.flight_port)
    except GovernError:
        gateway.close()
        raise
    err.print(f"Arrow Flight on {flight.location}", highlight=False)
    # uvicorn re-raises the signal that stopped it once it has shut down; with the default
    # handlers that would kill the process before Flight stops. These handlers take it instead,
    # so a stop by signal ends Flight's reads, closes the gateway and exits 0.
    previous = {sig: signal.signal(sig, _stop_requested) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        uvicorn.run(
            create_app(gateway, close_on_shutdown=False),
            host=s.host,
            port=s.port,
            log_level=s.log_level,
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        flight.stop()
        gateway.close()


def _stop_requested(signum: int, frame: object) -> None:
    """Re-raised by uvicorn after its graceful shutdown; nothing left to do but return."""


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply database migrations."""
    from govern.store.migrate import upgrade

    s = settings()
    upgrade(s.resolved_database_url, revision)
    err.print(f"database at revision {revision}")
    if revision == "head":
        _key_erasure_requests(s)


def _key_erasure_requests(s: Settings) -> None:
    """Requests stored before subjects were kept as commitments get theirs (logged)."""
    gateway = Gateway.open(s)
    try:
        keyed = gateway.commands.key_erasure_requests(s.cli_actor)
    finally:
        gateway.close()
    if keyed:
        err.print(f"{keyed} erasure request(s) keyed by commitment")


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
    issued = gateway.commands.issue_token(subject, role, gateway.settings.cli_actor, ttl)
    typer.echo(issued.token)
    gateway.close()


@token_app.command("revoke")
def token_revoke(
    jti: Annotated[str | None, typer.Argument(help="Token id (jti).")] = None,
    subject: Annotated[
        str | None, typer.Option(help="Revoke every token of this principal.")
    ] = None,
) -> None:
    """Revoke one token, or every token of a principal."""
    if not (subject or jti):
        raise BadRequest("give a token id or --subject")
    gateway = open_gateway()
    try:
        actor = gateway.settings.cli_actor
        if subject:
            err.print(f"revoked {gateway.commands.revoke_tokens_of(subject, actor)} token(s)")
        elif jti:
            gateway.commands.revoke_token(jti, actor)
            err.print("revoked")
    finally:
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
    try:
        p = gateway.commands.put_principal(pid, role, attributes, gateway.settings.cli_actor)
        err.print(f"principal {p.id}: roles {', '.join(p.roles)}")
    finally:
        gateway.close()


@principal_app.command("disable")
def principal_disable(pid: Annotated[str, typer.Argument(help="Principal id.")]) -> None:
    """Disable a principal: its tokens stop working at once."""
    gateway = open_gateway()
    try:
        gateway.commands.disable_principal(pid, gateway.settings.cli_actor)
        err.print(f"principal {pid} disabled")
    finally:
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
    for p in gateway.queries.principals():
        table.add_row(p.id, ", ".join(p.roles), str(dict(p.attributes)), str(p.disabled))
    out.print(table)
    gateway.close()


@policy_app.command("show")
def policy_show() -> None:
    """Print the policy set in force: version, model and rules."""
    gateway = open_gateway()
    current = gateway.queries.policy()
    out.print(f"policy version {current.version}", highlight=False)
    out.print(current.model_text, highlight=False)
    for rule in current.rules:
        out.print(", ".join(rule), highlight=False)
    gateway.close()


@policy_app.command("load")
def policy_load(
    rules: Annotated[Path, typer.Argument(help="Rules file (CSV).", exists=True, dir_okay=False)],
    model: Annotated[
        Path | None, typer.Option(help="Casbin model file; default: keep the current model.")
    ] = None,
) -> None:
    """Validate a policy set and make it the one in force (atomically)."""
    from govern.policy.files import read_rules

    gateway = open_gateway()
    try:
        version = gateway.commands.put_policy(
            model.read_text() if model else None, read_rules(rules), gateway.settings.cli_actor
        )
        err.print(f"policy version {version} in force")
    finally:
        gateway.close()


@policy_app.command("test")
def policy_test(
    files: Annotated[
        list[Path] | None, typer.Argument(help="Test files; default policies/tests/*.yaml.")
    ] = None,
    store: Annotated[
        bool, typer.Option("--store", help="Test the set in force instead of the files' own.")
    ] = False,
) -> None:
    """Run policy test files; exits 1 on any failure, with a readable diff."""
    from govern.policy.testing import run_file
    from govern.resources import policies_dir

    paths = files or sorted((policies_dir() / "tests").glob("*.yaml"))
    if not paths:
        raise BadRequest("no policy test files found")
    policy = None
    if store:
        gateway = open_gateway()
        policy = gateway.queries.policy()
        gateway.close()
    failed = total = 0
    for path in paths:
        if not path.is_file():
            raise BadRequest(f"no test file {path}")
        for result in run_file(path, policy):
            total += 1
            if result.ok:
                out.print(f"[green]PASS[/green] {path.name}: {result.name}", highlight=False)
                continue
            failed += 1
            out.print(f"[red]FAIL[/red] {path.name}: {result.name}", highlight=False)
            for line in result.failures:
                out.print(f"     {line}", highlight=False)
    out.print(f"{total - failed} passed, {failed} failed", highlight=False)
    if failed:
        raise typer.Exit(1)


@model_app.command("prepare")
def model_prepare() -> None:
    """Convert the local model's GGUF into GOVERN_HOME ahead of serving (minutes, once)."""
    import time

    from rich.progress import SpinnerColumn

    gateway = open_gateway()
    started = time.perf_counter()
    try:
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err
        ) as progress:
            task = progress.add_task("opening the language model", total=None)
            converted = gateway.prepare_model(
                lambda phase: progress.update(task, description=phase)
            )
        status = gateway.queries.model_status()
    finally:
        gateway.close()
    name = status.name if status is not None else "none"
    if converted:
        err.print(f"{name}: converted in {time.perf_counter() - started:.1f} s", highlight=False)
    else:
        err.print(f"{name}: nothing to prepare", highlight=False)


@ledger_app.command("verify")
def ledger_verify(
    bundle: Annotated[
        Path | None, typer.Option(help="Verify this exported bundle offline instead.")
    ] = None,
    rpc_url: Annotated[
        str | None,
        typer.Option(
            help="Check the anchors on this Ethereum JSON-RPC node (default: the "
            "configured chain; none for a bundle)."
        ),
    ] = None,
    chain: Annotated[
        bool, typer.Option("--chain/--no-chain", help="Check the anchors on the chain.")
    ] = True,
    url: Annotated[
        str | None, typer.Option(help="Fetch the log from a gateway's REST API at this URL.")
    ] = None,
    token: Annotated[str | None, typer.Option(help="Bearer token for --url.")] = None,
    vkey: Annotated[
        str | None,
        typer.Option(help="The verifier key you trust (from GET /v1/ledger/key, kept apart)."),
    ] = None,
) -> None:
    """Recompute the log, check every checkpoint, entry and anchor (on the chain); exit 1
    naming the first bad index or the mismatching anchor."""
    from govern.ledger.anchor import Chain, open_chain
    from govern.ledger.verify import Bundle, LedgerVerificationError, verify_bundle

    s = settings()
    if url is not None:
        data = _fetch_bundle(url, token)
        use_chain = chain and rpc_url is not None
    elif bundle is not None:
        data = Bundle.read(bundle)
        # Offline by default: a bundle's anchors are checked only against a node named here.
        use_chain = chain and rpc_url is not None
    else:
        gateway = open_gateway()
        try:
            data = gateway.queries.bundle(gateway.operator)
        finally:
            gateway.close()
        use_chain = chain and (rpc_url is not None or s.chain_backend != "none")
    if vkey is not None and data.vkey != vkey:
        err.print("[red]ledger verification FAILED:[/red] the log is signed by another key")
        raise typer.Exit(1)
    lookup: Chain | None = None
    if use_chain and data.anchors:
        # Read-only: no key needed, and a serving gateway may hold the embedded chain.
        lookup = open_chain(s, read_only=True, rpc_url=rpc_url)
    try:
        report = verify_bundle(data, lookup)
    except LedgerVerificationError as exc:
        err.print(
            f"[red]ledger verification FAILED:[/red] {exc.message}", highlight=False, soft_wrap=True
        )
        if exc.first_bad_index is not None:
            err.print(f"first bad index: {exc.first_bad_index}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    finally:
        if lookup is not None:
            lookup.close()
    out.print(
        f"ledger OK: {report.entries} entries, {report.checkpoints} signed checkpoints, "
        f"verified up to size {report.verified_size}",
        highlight=False,
    )
    if report.chain is not None:
        out.print(
            f"anchors OK: {report.anchors_on_chain} of {report.anchors} anchors match the "
            f"signed checkpoints on {report.chain}",
            highlight=False,
            soft_wrap=True,
        )
    elif not report.anchors:
        out.print("anchors: none recorded yet", highlight=False, soft_wrap=True)
    elif not use_chain:
        out.print(
            f"anchors: {report.anchors} recorded, chain check skipped"
            + (" (offline bundle)" if bundle is not None else " (--no-chain)"),
            highlight=False,
            soft_wrap=True,
        )
    for note in report.notes:
        out.print(f"note: {note}", highlight=False, soft_wrap=True)


@ledger_app.command("anchor")
def ledger_anchor() -> None:
    """Sign a checkpoint at the head and anchor it on the configured chain now; prints the
    anchor as JSON (a serving gateway does this by itself every N entries or T seconds)."""
    import json

    gateway = Gateway.open(settings(), anchor=True)
    try:
        record = gateway.anchor_now(gateway.settings.cli_actor)
    finally:
        gateway.close()
    if record is None:
        err.print("nothing to anchor: every entry is already anchored")
        return
    typer.echo(json.dumps({**record.to_json(), "gas_used": record.gas_used}, indent=2))


def _fetch_bundle(url: str, token: str | None) -> Any:
    import json
    import urllib.error
    import urllib.request

    from govern.ledger.verify import Bundle

    if not url.startswith(("http://", "https://")):
        raise BadRequest("--url must be an http(s) URL")
    if not token:
        raise BadRequest("--url needs --token")
    req = urllib.request.Request(  # noqa: S310 - scheme checked above
        url.rstrip("/") + "/v1/ledger/bundle", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:  # noqa: S310
            return Bundle.from_json(json.load(resp))
    except urllib.error.HTTPError as exc:
        raise BadRequest(f"the gateway answered {exc.code} for the ledger bundle") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise BadRequest(f"cannot reach {url}: {exc}") from exc


@ledger_app.command("proof")
def ledger_proof(
    index: Annotated[int, typer.Argument(min=0, help="Entry index.")],
    tree_size: Annotated[
        int | None, typer.Option(min=1, help="Tree size; default: a fresh checkpoint.")
    ] = None,
) -> None:
    """Print an RFC 9162 inclusion proof for entry N, as JSON."""
    import json

    from govern.ledger.merkle import leaf_hash

    gateway = open_gateway()
    try:
        size = tree_size or gateway.queries.checkpoint()[0].tree_size
        hashes = gateway.queries.inclusion_proof(index, size)
        leaf = gateway.queries.ledger_entry(gateway.operator, index).leaf
        root = gateway.queries.root(size)
    finally:
        gateway.close()
    typer.echo(
        json.dumps(
            {
                "index": index,
                "tree_size": size,
                "leaf_hash": leaf_hash(leaf).hex(),
                "root_hash": root.hex(),
                "hashes": [h.hex() for h in hashes],
            },
            indent=2,
        )
    )


@ledger_app.command("export")
def ledger_export(
    path: Annotated[Path, typer.Argument(help="Bundle file to write.")],
) -> None:
    """Write a portable bundle (entries, leaf hashes, signed checkpoints, key) that verifies
    offline with `govern ledger verify --bundle`."""
    gateway = open_gateway()
    try:
        data = gateway.queries.bundle(gateway.operator)
    finally:
        gateway.close()
    data.write(path)
    err.print(
        f"wrote {len(data.leaves)} entries, {len(data.checkpoints)} checkpoints and "
        f"{len(data.anchors)} anchors"
    )


@erasure_app.command("request")
def erasure_request(
    subject: Annotated[str, typer.Option("--subject", help="The data subject's id.")],
    legal_basis: Annotated[str, typer.Option(help="e.g. gdpr-art17")],
    dataset: Annotated[
        list[str] | None, typer.Option("--dataset", help="Limit to a dataset; repeatable.")
    ] = None,
) -> None:
    """Withdraw a subject's rows from every version at once; prints the request."""
    gateway = open_gateway()
    try:
        info = gateway.commands.request_erasure(
            subject, dataset, legal_basis, gateway.settings.cli_actor
        )
    finally:
        gateway.close()
    out.print(
        f"{info.id}: {info.state}, {info.excluded_rows} row(s) excluded"
        + ("" if info.created else " (already requested)"),
        highlight=False,
    )


@erasure_app.command("status")
def erasure_status(rid: Annotated[str, typer.Argument(help="Request id.")]) -> None:
    """A request's state, excluded rows, the runs that read the subject, its jobs and the
    rewrite of the data files."""
    gateway = open_gateway()
    view = gateway.queries.erasure_request(rid)
    gateway.close()
    info = view.info
    out.print(f"{info.id}: {info.state}, {info.excluded_rows} row(s) excluded", highlight=False)
    if info.message:
        out.print(info.message, highlight=False, markup=False)
    table = Table("run", "principal", "dataset", "version", "rows read")
    for run in view.affected_runs:
        for r in run.reads:
            table.add_row(run.run.id, run.run.principal_id, r.dataset, str(r.version), str(r.rows))
    out.print(table)
    if view.jobs:
        out.print(jobs_table(view.jobs))
    rewrite = view.rewrite
    out.print(f"rewrite of the data files: {rewrite.state}", highlight=False)
    for v in rewrite.versions:
        out.print(
            f"  {v.dataset} v{v.version}: {v.state}, {v.rows_excluded} row(s) to remove"
            + (f", {v.rows_before} -> {v.rows_after} rows" if v.rows_after is not None else "")
            + (f" ({v.message})" if v.message else ""),
            highlight=False,
            markup=False,
        )


@erasure_app.command("check")
def erasure_check(
    subject: Annotated[str, typer.Option("--subject", help="The data subject's id.")],
) -> None:
    """Was this subject's erasure requested and completed? Finds the log entries by the
    subject's commitment under this deployment's key (the log names nobody); exits 1 when
    there is no request."""
    gateway = open_gateway()
    try:
        found = gateway.queries.subject_erasures(gateway.operator, subject)
    finally:
        gateway.close()
    if not found:
        err.print("no erasure request for this subject is in the log")
        raise typer.Exit(1)
    for view in found:
        data = view.entry["data"]
        out.print(
            f"entry {view.index} {view.entry['time']}: {view.entry['kind']} {data['id']}"
            + (f" by {view.entry['actor']}" if view.entry["kind"] == "erasure.request" else ""),
            highlight=False,
            soft_wrap=True,
        )


@erasure_app.command("list")
def erasure_list() -> None:
    """Every erasure request."""
    gateway = open_gateway()
    table = Table("id", "subject", "state", "rows excluded", "legal basis")
    for info in gateway.queries.erasure_requests():
        table.add_row(
            info.id,
            info.subject_id or f"(removed; commitment {info.subject_commitment[:16]}...)",
            info.state,
            str(info.excluded_rows),
            info.legal_basis,
        )
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
