"""The admin audit console in a real browser: headless Debian Chromium driven by Playwright,
against the REST app served by uvicorn on a loopback port, over a gateway with the demo loaded
and real activity made through the decider, the read path and the command layer.

Chromium is the system one (``/usr/bin/chromium``, from ``make system-deps``); Playwright never
downloads a browser here. Each view's screenshot goes to ``test-artifacts/console/`` (ignored
by git) for a person to look at.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright
from sqlalchemy import update

from govern.auth import Caller
from govern.demo import load_demo
from govern.gateway import DecisionRequest, Gateway, ReadRequest
from govern.ledger.canonical import canonical_json
from govern.settings import Settings, load_settings
from govern.store.migrate import upgrade
from govern.store.models import LedgerEntry
from govern.unlearning.recipes import RecipeBody, RecipeDatasetBody
from tests.conftest import MODEL_CACHE, TEST_ACTOR, raw_store, serve_rest
from tests.unit.quality.planted import measurements, with_column

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "console"
CHROMIUM = "/usr/bin/chromium"
VENDOR = ROOT / "govern" / "console" / "static" / "vendor"
# Every view, in the nav's order (admins, stewards, auditors and compliance officers see all),
# and the heading it draws.
TITLES = {
    "overview": "Overview",
    "log": "Access log",
    "ledger": "Ledger",
    "datasets": "Datasets",
    "policies": "Policies",
    "compliance": "Compliance",
    "erasure": "Erasure",
    "runs": "Runs",
}
VIEWS = tuple(TITLES)
IN_CI = os.environ.get("CI", "").lower() == "true"

if not Path(CHROMIUM).exists() or not (VENDOR / "htmx.min.js").exists():
    reason = "the console's browser tests need /usr/bin/chromium and `make console-assets`"
    if IN_CI:
        raise RuntimeError(reason)
    pytest.skip(reason, allow_module_level=True)

pytestmark = pytest.mark.slow
expect.set_options(timeout=10_000)

# A payload that, if it ever ran, would leave a mark on the window and in the DOM.
XSS_SCRIPT = "<script>window.__pwned = 'script'</script>"
XSS_IMG = "<img src=x id=pwned onerror=\"window.__pwned='img'\">"
XSS = f"{XSS_SCRIPT}{XSS_IMG}"


# -- the gateway, its activity, the server ---------------------------------------------------


def console_settings(home: Path) -> Settings:
    return load_settings(
        home=home / "home",
        database_url=f"sqlite:///{home / 'govern.db'}",
        config=home / "none.toml",
        llm_backend="none",
        jobs_backend="none",
        llm_cache_dir=MODEL_CACHE,
    )


@contextmanager
def opened(home: Path) -> Iterator[Gateway]:
    settings = console_settings(home)
    upgrade(settings.resolved_database_url)
    gateway = Gateway.open(settings)
    try:
        yield gateway
    finally:
        gateway.close()


def parquet_file(table: pa.Table, path: Path) -> Path:
    pq.write_table(table, path)
    return path


def contacts(n: int = 300) -> pa.Table:
    """Vital signs with an e-mail column (the detector proposes pii.email for it)."""
    return measurements(n).append_column(
        "email", pa.array([f"patient{i}@example.org" for i in range(n)])
    )


def duplicated(table: pa.Table) -> pa.Table:
    """The table with a duplicated reading id: fails the inferred uniqueness expectation."""
    ids = table.column("reading_id").to_pylist()
    ids[1] = ids[0]
    return with_column(table, "reading_id", ids)


def upload_with_quarantine(gateway: Gateway, name: str, folder: Path, **kw: Any) -> None:
    """v1 of ``name`` (active, with a proposed pii.email tag), then v2 (quarantined)."""
    folder.mkdir(parents=True, exist_ok=True)
    first = gateway.commands.ingest(
        name,
        parquet_file(contacts(), folder / f"{name}-1.parquet"),
        "patient_id",
        "demo-steward",
        unique_columns=["reading_id"],
        **kw,
    )
    assert first.info.state == "active"
    email = next(c for c in first.info.columns if c.name == "email")
    assert [(t.tag, t.confirmed) for t in email.tag_details] == [("pii.email", False)]
    second = gateway.commands.ingest(
        name,
        parquet_file(duplicated(contacts()), folder / f"{name}-2.parquet"),
        "patient_id",
        "demo-steward",
    )
    assert second.info.state == "quarantined"


def open_review(gateway: Gateway, description: str = "We need it to improve the model.") -> str:
    """An assessment whose verdict needs a person (no model runs here); returns its review."""
    info = gateway.commands.assess(
        "chat_logs",
        "training",
        ["gdpr-art6-lawful-basis"],
        {"legal_basis": "legitimate_interests", "description": description},
        "demo-compliance",
    )
    (review,) = [r for r in info.reviews if r.state == "open"]
    return review.id


def caller(gateway: Gateway, pid: str, role: str) -> Caller:
    return gateway.decider.authenticate(gateway.commands.issue_token(pid, role, TEST_ACTOR).token)


def read_all(gateway: Gateway, who: Caller, req: ReadRequest) -> int:
    read = gateway.reads.open(who, req)
    return int(read.to_reader().read_all().num_rows)


@dataclass
class Console:
    """The shared gateway, served, and what the fixture made in it."""

    gateway: Gateway
    url: str
    home: Path
    run_id: str
    rows_read: int
    review_id: str
    erasure_id: str

    def token(self, pid: str, role: str, ttl_seconds: int | None = None) -> str:
        return self.gateway.commands.issue_token(pid, role, TEST_ACTOR, ttl_seconds).token


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    home = tmp_path_factory.mktemp("console")
    with opened(home) as gateway:
        load_demo(gateway, scale=0.02)
        trainer = caller(gateway, "demo-trainer", "trainer")
        # Decisions allowed and denied, through the decider.
        plans = gateway.decider.decide_many(
            trainer,
            [
                DecisionRequest("patient_notes", "training"),
                DecisionRequest("chat_logs", "training"),
                DecisionRequest("code_corpus", "training"),
                DecisionRequest("patient_notes", "marketing"),
                DecisionRequest("code_corpus", "evaluation"),
            ],
        )
        assert {p.allowed for p in plans} == {True, False}
        # A governed read with a run id, through the read path.
        run_id = "run-2026-finetune-1"
        rows = read_all(gateway, trainer, ReadRequest("chat_logs", "training", run_id=run_id))
        assert rows > 0
        # How the run was trained, so an erasure of a row it read plans a retrain job.
        gateway.commands.put_recipe(
            trainer,
            run_id,
            RecipeBody(
                trainer="examples/train_reference.py",
                datasets=[RecipeDatasetBody(name="chat_logs", version=1)],
                purpose="training",
                output=f"models/{run_id}.pt",
            ),
        )
        # An assessment that leaves a review open.
        review_id = open_review(gateway)
        # An upload whose e-mail column gets a proposed tag, and a quarantined second version.
        upload_with_quarantine(
            gateway, "vitals", home / "uploads", description="Vital signs from the wards"
        )
        # An erasure request for a subject whose rows the run read: its retrain job waits (no
        # job backend runs here), so the request stays in flight.
        chat = gateway.queries.dataset("chat_logs")
        subject = _a_subject_read_by(gateway, run_id, chat.name)
        erasure = gateway.commands.request_erasure(subject, None, "gdpr-art17", "demo-compliance")
        assert erasure.excluded_rows > 0 and erasure.state != "completed"
        with serve_rest(gateway) as url:
            yield Console(gateway, url, home, run_id, rows, review_id, erasure.id)


def _a_subject_read_by(gateway: Gateway, run_id: str, dataset: str) -> str:
    """A data subject one of whose rows the run received."""
    info = gateway.queries.dataset(dataset)
    received = gateway.queries.run_rows(run_id, info.version_id)
    steward = caller(gateway, "demo-steward", "steward")  # the demo lets stewards audit
    read = gateway.reads.open(steward, ReadRequest(dataset, "audit"))
    table = read.to_reader().read_all()
    for row_id, subject in zip(
        table.column("_row_id").to_pylist(),
        table.column(info.subject_column).to_pylist(),
        strict=True,
    ):
        if row_id in received:
            return str(subject)
    raise AssertionError("the run received no row")


# -- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    b = playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    )
    yield b
    b.close()


@dataclass
class Tab:
    """A page in its own browser context, with what its scripts and the network did."""

    page: Page
    errors: list[str]  # uncaught script errors
    console_errors: list[str]  # console.error lines (CSP violations show here)
    requests: list[str]  # every URL the page asked for


def _console_error(tab: Tab, kind: str, text: str) -> None:
    # Chromium logs every 4xx/5xx answer, and every aborted request, as an error line; those are
    # asserted where a test expects them. What is left: script errors and CSP violations.
    if kind == "error" and not text.startswith("Failed to load resource"):
        tab.console_errors.append(text)


@pytest.fixture
def new_tab(browser: Browser) -> Iterator[Callable[[], Tab]]:
    contexts = []

    def make() -> Tab:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        tab = Tab(page, [], [], [])
        page.on("pageerror", lambda e: tab.errors.append(str(e)))
        page.on("console", lambda m: _console_error(tab, m.type, m.text))
        page.on("request", lambda r: tab.requests.append(r.url))
        return tab

    yield make
    for c in contexts:
        c.close()


@pytest.fixture
def tab(new_tab: Callable[[], Tab]) -> Tab:
    return new_tab()


def sign_in(page: Page, url: str, token: str) -> None:
    page.goto(f"{url}/console")
    expect(page.locator("#sign-in")).to_be_visible()
    page.fill("#token", token)
    page.click("#sign-in-form button[type=submit]")


@contextmanager
def redraw(page: Page) -> Iterator[None]:
    """Wait until what the block asks for has replaced what #main showed before it."""
    page.evaluate(
        "() => { for (const el of document.querySelectorAll('#main *')) el.dataset.old = '' }"
    )
    yield
    expect(page.locator("#main [data-old]")).to_have_count(0)
    expect(page.locator("#main > *").first).to_be_attached()


def open_view(page: Page, name: str) -> None:
    """Click the view's nav link and wait until it is drawn."""
    with redraw(page):
        page.click(f"#nav a[data-view='{name}']")
    expect(page.locator("#main h1")).to_have_text(TITLES[name])


def shoot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def proofs_verified(page: Page) -> None:
    """Every entry on screen verified in the browser against the signed checkpoint."""
    expect(page.locator("#proof-status")).to_have_attribute("data-proofs", "verified")
    cells = page.locator("td.proof")
    assert cells.count() > 0
    states = cells.evaluate_all("cells => cells.map(c => c.dataset.state)")
    assert set(states) == {"verified"}, states


# -- 1. sign-in, views, screenshots -------------------------------------------------------------


def test_signing_in_shows_the_roles_nav_and_every_view_draws_real_data(
    console: Console, tab: Tab
) -> None:
    page = tab.page
    g = console.gateway
    sign_in(page, console.url, console.token("demo-admin", "admin"))
    expect(page.locator("#who")).to_have_text("demo-admin (admin)")
    nav = page.locator("#nav a[data-view]")
    expect(nav).to_have_count(len(VIEWS))
    assert nav.evaluate_all("links => links.map(a => a.dataset.view)") == list(VIEWS)
    # The first view is drawn on sign-in.
    expect(page.locator("#main h1")).to_have_text("Overview")

    # Overview: the decisions the fixture made, the chart, the reviews and erasures open.
    main = page.locator("#main")
    cards = main.locator(".card")
    expect(cards.filter(has_text="allowed decisions")).to_contain_text(re.compile(r"\d+"))
    allowed = int(cards.filter(has_text="allowed decisions").locator(".big").inner_text())
    denied = int(cards.filter(has_text="denied decisions").locator(".big").inner_text())
    assert allowed >= 4 and denied >= 2  # 3 allowed + the reads' decisions; 2 denied
    expect(cards.filter(has_text="open reviews").locator(".big")).not_to_have_text("0")
    expect(cards.filter(has_text="erasure requests in flight").locator(".big")).not_to_have_text(
        "0"
    )
    expect(main.locator(".chart canvas").first).to_be_visible()  # uPlot drew the chart
    served = main.locator("section.two table").nth(1)
    expect(served).to_contain_text("chat_logs")
    expect(served).to_contain_text("training")
    expect(main.locator("section.two table").first).to_contain_text("patient_notes")
    shoot(page, "overview")

    # Access log: the newest entries, every proof checked here.
    open_view(page, "log")
    newest_first = g.queries.search_log(g.operator, limit=50)
    rows = main.locator("tr.entry")
    expect(rows).to_have_count(len(newest_first))
    proofs_verified(page)
    shoot(page, "log")
    # Searched by the run: its read, the read's end and its recipe, with their proofs.
    main.locator("form.search input[name=run]").fill(console.run_id)
    with redraw(page):
        main.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(3)
    assert rows.locator("td:nth-child(3)").all_inner_texts() == ["run.recipe", "read.end", "read"]
    assert set(rows.locator("td:nth-child(4)").all_inner_texts()) == {"demo-trainer"}
    expect(rows.filter(has_text="read.end").locator("pre")).to_contain_text(
        f'"rows": {console.rows_read}'
    )
    proofs_verified(page)

    # Ledger: the signed head, its signature checked here; a range verified on request.
    open_view(page, "ledger")
    expect(page.locator("#head-signature")).to_have_attribute("data-state", "verified")
    size = g.queries.checkpoint()[0].tree_size
    expect(main).to_contain_text(f"Tree size {size}")
    page.click("#verify-range button[type=submit]")
    expect(page.locator("#verify-range-result")).to_have_class(re.compile(r"\bok\b"))
    expect(page.locator("#verify-range-result")).to_contain_text("verified")
    shoot(page, "ledger")

    # Datasets: the demo's and the upload; the upload's versions, tags and quality.
    open_view(page, "datasets")
    for d in g.queries.datasets():
        expect(main.locator("table").first).to_contain_text(d.name)
    expect(main).to_contain_text("Vital signs from the wards")
    main.get_by_role("link", name="vitals", exact=True).click()
    expect(main.locator("section.detail h2")).to_have_text("vitals")
    expect(main.locator("span.state.quarantined")).to_have_text("quarantined")
    expect(main.locator("span.tag", has_text="pii.email")).to_be_visible()
    main.get_by_role("link", name="v2", exact=True).click()
    expect(main.locator("section.detail")).to_contain_text("Suite failed")
    expect(main.locator("section.detail")).to_contain_text("expect_column_values_to_be_unique")
    shoot(page, "datasets")

    # Policies: the set in force.
    open_view(page, "policies")
    policy = g.queries.policy()
    expect(main).to_contain_text(f"{len(policy.rules)} rules")
    expect(main.locator("table.rules")).to_contain_text("consent_research")
    shoot(page, "policies")

    # Compliance: the open review and the assessment behind it.
    open_view(page, "compliance")
    expect(main.locator("section").first).to_contain_text(console.review_id)
    expect(main.locator("section").first).to_contain_text("gdpr-art6-lawful-basis")
    (review,) = [r for r in g.queries.reviews(None) if r.id == console.review_id]
    assessment = main.locator("details.assessment").filter(has_text=review.assessment_id)
    assessment.locator("summary").click()
    expect(assessment.locator("span.verdict")).to_have_text("needs_review")
    expect(assessment).to_contain_text("chat_logs for training")
    expect(assessment.locator("small.readers")).to_contain_text("read by: rules")
    shoot(page, "compliance")

    # Erasure: the request, and (opened) the run that read the subject's rows.
    open_view(page, "erasure")
    main.get_by_role("link", name=console.erasure_id).click()
    detail = main.locator("section.detail")
    expect(detail.locator("h2")).to_have_text(console.erasure_id)
    expect(detail).to_contain_text(console.run_id)
    shoot(page, "erasure")

    # Runs: the run the fixture read with, and what it read.
    open_view(page, "runs")
    main.get_by_role("link", name=console.run_id).click()
    detail = main.locator("section.detail")
    expect(detail.locator("h2")).to_have_text(console.run_id)
    expect(detail).to_contain_text("chat_logs")
    expect(detail.locator("td.num").first).to_have_text(str(console.rows_read))
    shoot(page, "runs")

    assert not tab.errors, tab.errors
    assert not tab.console_errors, tab.console_errors


# -- 2. changes from the page, logged and verified ----------------------------------------------


def submit_in(form: Any, button: str, expect_result: str | re.Pattern[str]) -> None:
    """Click a form's button and wait for its success message."""
    form.get_by_role("button", name=button).click()
    expect(form.locator(".result")).to_contain_text(expect_result)
    expect(form.locator(".result")).to_have_class(re.compile(r"\bok\b"))


def redrawn_with(page: Page, message: str) -> None:
    """After a change the page redraws the view it came from and says what happened."""
    expect(page.locator("#banner")).to_be_visible()
    expect(page.locator("#banner")).to_have_class("ok")
    expect(page.locator("#banner")).to_contain_text(message)


def logged_and_verified(
    page: Page, gateway: Gateway, kind: str, index: int, actor: str, obj: str
) -> None:
    """Search the access log by kind: the entry is listed and its proof checks out here."""
    open_view(page, "log")
    form = page.locator("#main form.search")
    form.locator("input[name=kind]").fill(kind)
    with redraw(page):
        form.get_by_role("button", name="Search").click()
    # The page lists what the store's search finds: that kind only, newest first.
    found = gateway.queries.search_log(gateway.operator, kind=kind, limit=50)
    rows = page.locator("#main tr.entry")
    expect(rows).to_have_count(len(found))
    assert rows.evaluate_all("rows => rows.map(r => Number(r.dataset.index))") == [
        v.index for v in found
    ]
    assert set(page.locator("#main tr.entry td:nth-child(3)").all_inner_texts()) == {kind}
    row = page.locator(f"#main tr.entry[data-index='{index}']")
    expect(row.locator("td").nth(3)).to_have_text(actor)
    expect(row.locator("td").nth(4)).to_have_text(obj)
    proofs_verified(page)
    expect(row.locator("td.proof")).to_have_attribute("data-state", "verified")


def newest(gateway: Gateway, kind: str) -> Any:
    (view,) = gateway.queries.search_log(gateway.operator, kind=kind, limit=1)
    return view


def test_changes_made_in_the_page_go_through_the_api_and_are_logged_with_verified_proofs(
    console: Console, new_tab: Callable[[], Tab]
) -> None:
    g = console.gateway
    # What this test changes is its own: a fresh upload, and a fresh open review.
    upload_with_quarantine(g, "intake", console.home / "intake")
    review_id = open_review(g, "Intake forms for the triage model.")
    subject = str(contacts().column("patient_id")[0])

    # -- a steward: confirms the proposed tag, accepts the quarantined version, edits policy
    steward = new_tab()
    page, main = steward.page, steward.page.locator("#main")
    sign_in(page, console.url, console.token("demo-steward", "steward"))
    open_view(page, "datasets")
    main.get_by_role("link", name="intake", exact=True).click()
    expect(main.locator("section.detail h2")).to_have_text("intake")
    email = main.locator("form[data-action='set-tags'][data-column='email']")
    email_row = main.locator("tr", has=page.locator("form[data-column='email']"))
    expect(email_row.locator("span.tag.proposed")).to_have_text("pii.email (proposed)")
    submit_in(email, "Confirm", "tags of email saved")
    redrawn_with(page, "tags of email saved")
    expect(email_row.locator("span.tag")).to_have_text("pii.email")
    expect(email_row.locator("span.tag.proposed")).to_have_count(0)
    (email_col,) = [c for c in g.queries.dataset("intake").columns if c.name == "email"]
    assert [(t.tag, t.confirmed) for t in email_col.tag_details] == [("pii.email", True)]
    tags_entry = newest(g, "dataset.tags")
    assert tags_entry.entry["actor"] == "demo-steward"
    assert tags_entry.entry["data"]["column"] == "email"

    accept = main.locator("form[data-action='accept-version'][data-version='2']")
    submit_in(accept, "Accept and serve", "version 2 accepted")
    redrawn_with(page, "version 2 accepted")
    expect(main.locator("form[data-action='accept-version']")).to_have_count(0)
    expect(main.locator("tr", has_text="v2").locator("span.state")).to_have_text("active")
    assert [v.state for v in g.queries.versions("intake")] == ["active", "active"]
    quality = g.queries.quality_result("intake", 2)
    assert quality.accepted_by == "demo-steward"
    accept_entry = newest(g, "dataset.accept")
    assert accept_entry.entry["object"] == "dataset:intake/v2"

    open_view(page, "policies")
    before = g.queries.policy()
    editor = main.locator("#policy-editor")
    rules = json.loads(editor.locator("textarea[name=rules]").input_value())
    assert rules == [list(r) for r in before.rules]
    added = ["p", "r.sub.role == 'trainer'", "intake", "read", "training", "True", "allow"]
    edited = "[\n" + ",\n".join(json.dumps(r) for r in [*rules, added]) + "\n]"
    editor.locator("textarea[name=rules]").fill(edited)
    editor.get_by_role("button", name="Simulate").click()
    result = editor.locator(".result")
    expect(result.locator("p.ok")).to_contain_text(f"change(s) against version {before.version}")
    changes = result.locator("table tbody tr", has_text="intake")
    expect(changes.first).to_contain_text("demo-trainer")
    expect(changes.first).to_contain_text("allow")
    assert g.queries.policy().version == before.version  # a simulation changes nothing
    shoot(page, "policies-simulation")
    submit_in(editor, "Save", f"saved as version {(before.version or 0) + 1}")
    redrawn_with(page, "saved as version")
    expect(main).to_contain_text(f"version {(before.version or 0) + 1}")
    after = g.queries.policy()
    assert after.version == (before.version or 0) + 1
    assert tuple(added) in {tuple(r) for r in after.rules}
    policy_entry = newest(g, "policy.put")
    assert policy_entry.entry["object"] == f"policy:{after.version}"

    # -- a compliance officer: decides the review with a note, requests an erasure
    officer = new_tab()
    page, main = officer.page, officer.page.locator("#main")
    sign_in(page, console.url, console.token("demo-compliance", "compliance"))
    open_view(page, "compliance")
    decide = main.locator(f"form[data-action='decide-review'][data-review='{review_id}']")
    decide.locator("select[name=verdict]").select_option("non_compliant")
    note = "No balancing test on file; refused until there is one."
    decide.locator("input[name=note]").fill(note)
    submit_in(decide, "Decide", "decided")
    redrawn_with(page, "decided")
    # Out of the queue, and shown decided, with its note, under its assessment.
    expect(main.locator(f"form[data-review='{review_id}']")).to_have_count(0)
    expect(main.locator("section").first).not_to_contain_text(review_id)
    (decided,) = [r for r in g.queries.reviews(None) if r.id == review_id]
    assessment = main.locator("details.assessment", has_text=decided.assessment_id)
    expect(assessment.locator("td").last).to_have_text(
        f'decided: non_compliant by demo-compliance ("{note}")'
    )
    assert (decided.state, decided.verdict, decided.note, decided.reviewer) == (
        "decided",
        "non_compliant",
        note,
        "demo-compliance",
    )
    review_entry = newest(g, "compliance.review")
    assert review_entry.entry["object"] == f"review:{review_id}"
    assert review_entry.entry["data"]["note_chars"] == len(note)  # the note stays out of the log

    open_view(page, "erasure")
    request = main.locator("form[data-action='request-erasure']")
    request.locator("input[name=subject_id]").fill(subject)
    request.locator("input[name=datasets]").fill("intake")
    # Requests are in flight, so the view refreshes itself; what was typed must survive that.
    with page.expect_response(lambda r: "/console/views/erasure" in r.url, timeout=5_000):
        pass
    page.wait_for_timeout(300)  # the poll's answer is drawn
    expect(request.locator("input[name=subject_id]")).to_have_value(subject)
    submit_in(request, "Request erasure", re.compile(r"request er-\S+: "))
    text = request.locator(".result").inner_text()
    rid = text.split()[1].rstrip(":")
    redrawn_with(page, f"request {rid}")
    expect(main.locator("section.detail h2")).to_have_text(rid)
    view = g.queries.erasure_request(rid)
    assert view.info.datasets == ("intake",) and view.info.excluded_rows > 0
    erasure_entry = newest(g, "erasure.request")
    assert erasure_entry.entry["object"] == f"erasure:{rid}"
    assert subject not in json.dumps(erasure_entry.entry)  # only the commitment is logged

    # -- each change, found in the access log by an auditor and verified in the browser
    auditor = new_tab()
    sign_in(auditor.page, console.url, console.token("demo-auditor", "auditor"))
    expect(auditor.page.locator("#main h1")).to_have_text("Overview")
    for entry, actor in (
        (tags_entry, "demo-steward"),
        (accept_entry, "demo-steward"),
        (policy_entry, "demo-steward"),
        (review_entry, "demo-compliance"),
        (erasure_entry, "demo-compliance"),
    ):
        logged_and_verified(
            auditor.page, g, entry.entry["kind"], entry.index, actor, entry.entry["object"]
        )
    for t in (steward, officer, auditor):
        assert not t.errors, t.errors
        assert not t.console_errors, t.console_errors


# -- 3. a tampered leaf ------------------------------------------------------------------------


@contextmanager
def own_console(home: Path) -> Iterator[tuple[Gateway, str]]:
    """A gateway and server of the test's own, for a test that breaks its store."""
    with opened(home) as gateway:
        load_demo(gateway, scale=0.01)
        with serve_rest(gateway) as url:
            yield gateway, url


RED = "rgb(198, 40, 40)"  # --bad in console.css


def test_a_leaf_edited_in_the_store_fails_verification_in_red(tmp_path: Path, tab: Tab) -> None:
    page, main = tab.page, tab.page.locator("#main")
    with own_console(tmp_path) as (g, url):
        token = g.commands.issue_token("demo-auditor", "auditor", TEST_ACTOR).token
        target = 3  # the demo's principal.put of demo-compliance
        view = g.queries.ledger_entry(g.operator, target)
        assert view.entry["kind"] == "principal.put"
        forged = json.loads(view.leaf)
        forged["data"]["roles"] = ["admin"]  # a quiet promotion, after the fact
        store = raw_store(g)
        try:
            with store.session() as s:
                s.execute(
                    update(LedgerEntry)
                    .where(LedgerEntry.idx == target)
                    .values(leaf=canonical_json(forged))
                )
        finally:
            store.dispose()

        sign_in(page, url, token)
        open_view(page, "log")
        status = page.locator("#proof-status")
        expect(status).to_have_attribute("data-proofs", "failed")
        expect(status).to_contain_text("1 entry FAILED verification")
        expect(status).to_have_css("color", RED)
        bad = main.locator(f"tr.entry[data-index='{target}']")
        expect(bad).to_have_class(re.compile(r"\btampered\b"))
        expect(bad.locator("td.proof")).to_have_attribute("data-state", "failed")
        expect(bad.locator("td.proof")).to_have_text("FAILED")
        expect(bad.locator("td.proof")).to_have_css("color", RED)
        bad.locator("summary").click()
        expect(bad.locator("pre")).to_contain_text('"admin"')  # what the edited leaf claims
        # Every other entry still verifies.
        states = main.locator("tr.entry").evaluate_all(
            "rows => rows.map(r => [Number(r.dataset.index),"
            " r.querySelector('td.proof').dataset.state])"
        )
        assert {i: s for i, s in states if s != "verified"} == {target: "failed"}, states
        shoot(page, "log-tampered")

        # The ledger view's range check names the entry too.
        open_view(page, "ledger")
        page.locator("#verify-range input[name=from]").fill("0")
        page.click("#verify-range button[type=submit]")
        result = page.locator("#verify-range-result")
        expect(result).to_contain_text(f"FAILED: entries {target} do not match")
        expect(result).to_have_css("color", RED)
    assert not tab.errors, tab.errors


# -- 4. roles ------------------------------------------------------------------------------------


def api_from_page(page: Page, method: str, path: str, body: Any = None) -> dict[str, Any]:
    """Call the REST API from the page, with the token the page keeps."""
    result: dict[str, Any] = page.evaluate(
        """async ([method, path, body]) => {
            const headers = { Authorization: `Bearer ${sessionStorage.getItem("govern.token")}` };
            if (body !== null) headers["Content-Type"] = "application/json";
            const r = await fetch(path, { method, headers,
                body: body === null ? undefined : JSON.stringify(body) });
            const text = await r.text();
            let json = null;
            try { json = JSON.parse(text); } catch (_) {}
            return { status: r.status, json, text };
        }""",
        [method, path, body],
    )
    return result


def test_an_auditor_sees_no_steward_action_and_the_api_refuses_each(
    console: Console, tab: Tab
) -> None:
    page, main = tab.page, tab.page.locator("#main")
    g = console.gateway
    sign_in(page, console.url, console.token("demo-auditor", "auditor"))
    expect(page.locator("#who")).to_have_text("demo-auditor (auditor)")
    expect(page.locator("#nav a[data-view]")).to_have_count(len(VIEWS))

    open_view(page, "datasets")
    main.get_by_role("link", name="vitals", exact=True).click()
    expect(main.locator("section.detail h2")).to_have_text("vitals")
    expect(main.locator("span.state.quarantined")).to_be_visible()
    expect(main.locator("span.tag", has_text="pii.email")).to_be_visible()  # reads the tags
    expect(main.locator("form")).to_have_count(0)  # no tag form, no accept button
    expect(main.get_by_role("button")).to_have_count(0)
    expect(main.locator("th", has_text="set tags")).to_have_count(0)

    open_view(page, "policies")
    expect(main.locator("table.rules")).to_be_visible()
    expect(main.locator("#policy-editor")).to_have_count(0)
    expect(main.locator("textarea")).to_have_count(0)

    open_view(page, "compliance")
    expect(main.locator("section").first).to_contain_text(console.review_id)
    expect(main.locator("form")).to_have_count(0)
    expect(main.locator("th", has_text="decide")).to_have_count(0)

    open_view(page, "erasure")
    expect(main.locator("table").first).to_contain_text(console.erasure_id)
    expect(main.locator("form")).to_have_count(0)

    # The API refuses each of those changes to an auditor, whatever the page shows.
    attempts: list[tuple[str, str, Any]] = [
        ("PUT", "/v1/datasets/vitals/columns/email/tags", {"tags": ["pii.email"]}),
        ("POST", "/v1/datasets/vitals/versions/2/accept", None),
        ("POST", "/v1/policies/simulate", {"rules": []}),
        ("PUT", "/v1/policies", {"rules": []}),
        ("POST", f"/v1/reviews/{console.review_id}", {"verdict": "compliant", "note": "ok"}),
        ("POST", "/v1/erasure-requests", {"subject_id": "U000001", "legal_basis": "gdpr-art17"}),
    ]
    for method, path, body in attempts:
        r = api_from_page(page, method, path, body)
        assert r["status"] == 403, (method, path, r)
        assert r["json"]["error"] == "forbidden" and "auditor" in r["json"]["message"]
    # And nothing changed.
    assert [v.state for v in g.queries.versions("vitals")] == ["active", "quarantined"]
    assert console.review_id in {r.id for r in g.queries.reviews("open")}
    (email,) = [c for c in g.queries.versions("vitals")[0].columns if c.name == "email"]
    assert [t.confirmed for t in email.tag_details] == [False]
    assert not tab.errors and not tab.console_errors, (tab.errors, tab.console_errors)


def test_a_trainer_gets_a_clear_403_page_and_no_view(console: Console, tab: Tab) -> None:
    page, main = tab.page, tab.page.locator("#main")
    sign_in(page, console.url, console.token("demo-trainer", "trainer"))
    forbidden = main.locator("section.forbidden")
    expect(forbidden.locator("h1")).to_have_text("403: not for this role")
    expect(forbidden.locator("p")).to_contain_text("role 'trainer' has no view here")
    expect(forbidden.locator("p")).to_contain_text("(forbidden, 403)")
    expect(page.locator("#nav")).to_be_empty()
    expect(page.locator("#sign-out")).to_be_visible()
    shoot(page, "forbidden-trainer")
    views = [u for u in tab.requests if "/console/views/" in u]
    assert [u.split("/console/views/")[1] for u in views] == ["nav"], views
    # Asked directly, every view is a 403 for the role too.
    for name in VIEWS:
        r = api_from_page(page, "GET", f"/console/views/{name}")
        assert r["status"] == 403, (name, r)
        assert r["json"]["error"] == "forbidden"


# -- 5. tokens -----------------------------------------------------------------------------------


def stored_token(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(
        "() => ({ session: sessionStorage.getItem('govern.token'),"
        " local: Object.keys(localStorage).length, cookie: document.cookie })"
    )
    return result


def test_an_expired_or_revoked_token_returns_to_sign_in_with_a_message(
    console: Console, tab: Tab
) -> None:
    page = tab.page
    g = console.gateway
    # Expired before signing in.
    expired = console.token("demo-auditor", "auditor", ttl_seconds=1)
    time.sleep(1.5)
    sign_in(page, console.url, expired)
    expect(page.locator("#sign-in-message")).to_have_text(
        "That token was refused: token expired (unauthenticated, 401)"
    )
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    assert stored_token(page)["session"] is None

    # Valid when signing in; kept in sessionStorage only, never in a URL.
    issued = g.commands.issue_token("demo-auditor", "auditor", TEST_ACTOR)
    sign_in(page, console.url, issued.token)
    expect(page.locator("#main h1")).to_have_text("Overview")
    assert stored_token(page) == {"session": issued.token, "local": 0, "cookie": ""}
    expect(page.locator("#token")).to_have_value("")  # the field is cleared
    # Revoked while signed in: the next view returns to sign-in and says why.
    g.commands.revoke_token(issued.jti, TEST_ACTOR)
    page.click("#nav a[data-view='log']")
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#sign-in-message")).to_have_text(
        "Signed out: token revoked or unknown (unauthenticated, 401)"
    )
    expect(page.locator("#app")).to_be_hidden()
    expect(page.locator("#main")).to_be_empty()
    assert stored_token(page)["session"] is None

    # Expiring while signed in, during a change made from the page.
    short = console.token("demo-steward", "steward", ttl_seconds=3)
    sign_in(page, console.url, short)
    open_view(page, "policies")
    time.sleep(3.5)
    page.locator("#policy-editor").get_by_role("button", name="Simulate").click()
    expect(page.locator("#sign-in-message")).to_have_text(
        "Signed out: token expired (unauthenticated, 401)"
    )
    assert stored_token(page)["session"] is None

    for token in (expired, issued.token, short):
        assert token not in page.url
        assert not [u for u in tab.requests if token in u]
        assert not [u for u in tab.requests if "token=" in u]
    shoot(page, "signed-out")


# -- 6. escaping ---------------------------------------------------------------------------------


def no_script_ran(page: Page) -> None:
    assert page.evaluate("() => window.__pwned") is None
    expect(page.locator("#pwned")).to_have_count(0)
    expect(page.locator("#main img")).to_have_count(0)
    # The only script element a view may hold is the overview's chart data.
    expect(page.locator("#main script:not([type='application/json'])")).to_have_count(0)


def test_planted_html_and_script_show_as_text_and_never_run(
    console: Console, tab: Tab, tmp_path: Path
) -> None:
    page, main = tab.page, tab.page.locator("#main")
    g = console.gateway
    admin = {"Authorization": f"Bearer {console.token('demo-admin', 'admin')}"}
    steward = {"Authorization": f"Bearer {console.token('demo-steward', 'steward')}"}
    officer = {"Authorization": f"Bearer {console.token('demo-compliance', 'compliance')}"}
    csv = b"patient_id,score\nP1,1\nP2,2\n"
    with httpx.Client(base_url=console.url, timeout=30) as http:
        # The page, and every view, allows scripts from the console's own files only.
        for path in ("/console", "/console/views/overview"):
            r = http.get(path, headers=admin)
            assert r.status_code == 200
            csp = r.headers["content-security-policy"]
            assert "script-src 'self';" in csp and "unsafe-inline" not in csp, csp
            assert r.headers["x-content-type-options"] == "nosniff"
        # Refused: principal ids, dataset and column names, tags and run ids are restricted.
        r = http.put(
            f"/v1/principals/{quote(XSS_IMG, safe='')}", headers=admin, json={"roles": ["trainer"]}
        )
        assert r.status_code == 400 and "principal ids" in r.json()["message"], r.text
        r = http.post(
            "/v1/datasets",
            headers=steward,
            data={"name": XSS, "subject_column": "patient_id"},
            files={"file": ("x.csv", csv, "text/csv")},
        )
        assert r.status_code == 400 and r.json()["error"] == "bad_request", r.text
        bad_column = csv.replace(b"score", XSS_IMG.replace('"', "").encode())
        r = http.post(
            "/v1/datasets",
            headers=steward,
            data={"name": "xss_columns", "subject_column": "patient_id"},
            files={"file": ("x.csv", bad_column, "text/csv")},
        )
        assert 400 <= r.status_code < 500, r.text
        r = http.put(
            "/v1/datasets/vitals/columns/email/tags", headers=steward, json={"tags": [XSS_IMG]}
        )
        assert 400 <= r.status_code < 500, r.text
        names = {d.name for d in g.queries.datasets()}
        assert "xss_columns" not in names and not any("<" in n for n in names)

        # Allowed free text, planted through the API and the command layer.
        r = http.put(
            "/v1/principals/xss-tester",
            headers=admin,
            json={"roles": ["trainer"], "display_name": XSS, "attributes": {"team": XSS}},
        )
        assert r.status_code == 200, r.text
        r = http.post(
            "/v1/erasure-requests",
            headers=officer,
            json={"subject_id": XSS, "legal_basis": XSS},
        )
        assert r.status_code == 202, r.text
    g.commands.ingest(
        "xss_notes",
        parquet_file(contacts(60), tmp_path / "xss.parquet"),
        "patient_id",
        "demo-steward",
        description=XSS,
    )
    trainer = caller(g, "demo-trainer", "trainer")
    (denied,) = g.decider.decide_many(trainer, [DecisionRequest("chat_logs", XSS)])
    assert not denied.allowed
    with pytest.raises(Exception, match="run ids are"):
        g.reads.open(trainer, ReadRequest("chat_logs", "training", run_id=XSS))
    # Stated facts settle purpose limitation (the purpose is the purpose of collection); the
    # lawful basis of legitimate interests needs a person, so the assessment waits for review.
    assessed = g.commands.assess(
        "chat_logs",
        XSS,
        ["gdpr-art5-purpose-limitation", "gdpr-art6-lawful-basis"],
        {"collection_purpose": XSS, "legal_basis": "legitimate_interests", "description": XSS},
        "demo-compliance",
    )
    evidence = " ".join(e for v in assessed.verdicts for e in v["evidence"])
    quoted = "<script>window.__pwned = "  # the free-text fact, quoted (repr) in the evidence
    assert quoted in evidence and "<img src=x id=pwned onerror=" in evidence, evidence
    planted_review = open_review(g)
    g.commands.decide_review(planted_review, "compliant", XSS, "demo-compliance")

    sign_in(page, console.url, console.token("demo-admin", "admin"))
    expect(page.locator("#main h1")).to_have_text("Overview")
    reasons = main.locator("section.two table").first  # the deny reason quotes the purpose
    expect(reasons).to_contain_text(quoted)
    expect(reasons).to_contain_text("<img src=x id=pwned onerror=")
    no_script_ran(page)

    open_view(page, "datasets")
    expect(main.locator("tr", has_text="xss_notes").locator("td").nth(4)).to_have_text(XSS)
    no_script_ran(page)
    shoot(page, "datasets-escaped")

    open_view(page, "compliance")
    mine = main.locator("details.assessment", has_text=assessed.id)
    expect(mine.locator("summary")).to_contain_text(f"chat_logs for {XSS}")
    cited = mine.locator("q", has_text="is the purpose of collection")
    expect(cited).to_contain_text(quoted)
    expect(cited).to_contain_text("<img src=x id=pwned onerror=")
    (decided,) = [r for r in g.queries.reviews(None) if r.id == planted_review]
    noted = main.locator("details.assessment", has_text=decided.assessment_id)
    expect(noted.locator("td", has_text="decided: compliant by demo-compliance")).to_have_text(
        f'decided: compliant by demo-compliance ("{XSS}")'
    )
    expect(main.locator("section").first.locator("tr", has_text=XSS)).to_have_count(1)
    no_script_ran(page)

    open_view(page, "erasure")
    expect(main.locator("tr", has_text="gdpr-art17").first).to_be_visible()
    expect(main.locator("td", has_text=XSS)).to_have_count(1)  # the legal basis
    no_script_ran(page)

    open_view(page, "log")
    put = main.locator("tr.entry", has_text="principal:xss-tester")
    expect(put.locator("pre")).to_contain_text(f'"team": {json.dumps(XSS, ensure_ascii=False)}')
    main.locator("form.search input[name=kind]").fill("decision")
    with redraw(page):
        main.get_by_role("button", name="Search").click()
    planted = main.locator("tr.entry", has=page.locator("pre", has_text=XSS_SCRIPT))
    expect(planted).not_to_have_count(0)
    planted.first.locator("summary").click()
    expect(planted.first.locator("pre")).to_be_visible()
    proofs_verified(page)
    no_script_ran(page)
    shoot(page, "log-escaped")
    assert not tab.errors, tab.errors
    assert not tab.console_errors, tab.console_errors  # no CSP violation either


# -- 7. errors -----------------------------------------------------------------------------------

# What a stack trace, or a database error's own text, would bring along.
TRACE_MARKERS = ("Traceback", 'File "', "sqlalchemy", "no such table", "SELECT ", ".py")


def no_trace(page: Page) -> None:
    text = page.locator("body").inner_text()
    for marker in (*TRACE_MARKERS, "OperationalError"):
        assert marker not in text, (marker, text)


def test_a_bad_view_parameter_shows_the_error_message(console: Console, tab: Tab) -> None:
    page, main = tab.page, tab.page.locator("#main")
    sign_in(page, console.url, console.token("demo-auditor", "auditor"))
    open_view(page, "log")
    main.locator("form.search input[name=since]").fill("garbage")
    main.get_by_role("button", name="Search").click()
    banner = page.locator("#banner")
    expect(banner).to_have_text(
        "since must be an ISO 8601 time, e.g. 2026-12-05T14:00 (bad_request, 400)"
    )
    expect(banner).to_have_class("error")
    expect(main).to_be_empty()
    no_trace(page)
    shoot(page, "error-bad-parameter")
    r = api_from_page(page, "GET", "/console/views/log?since=garbage")
    assert r["status"] == 400
    assert r["json"] == {
        "error": "bad_request",
        "message": "since must be an ISO 8601 time, e.g. 2026-12-05T14:00",
        "details": {"since": "garbage"},
    }
    r = api_from_page(page, "GET", "/console/views/nowhere")
    assert r["status"] == 404 and r["json"]["error"] == "not_found"
    # The page recovers with the next view.
    open_view(page, "ledger")
    expect(banner).to_be_hidden()


def test_a_store_failure_shows_the_error_shapes_message_never_a_trace(
    tmp_path: Path, tab: Tab
) -> None:
    page, main = tab.page, tab.page.locator("#main")
    with own_console(tmp_path) as (g, url):
        sign_in(page, url, g.commands.issue_token("demo-admin", "admin", TEST_ACTOR).token)
        expect(page.locator("#main h1")).to_have_text("Overview")
        store = raw_store(g)
        try:
            with store.engine.begin() as conn:
                conn.exec_driver_sql("DROP TABLE runs")
        finally:
            store.dispose()
        page.click("#nav a[data-view='runs']")
        # The store's failure is named, and nothing of it (SQL, paths, a trace) leaks.
        message = "the metadata store is unavailable"
        banner = page.locator("#banner")
        expect(banner).to_have_text(f"{message} (store_unavailable, 503)")
        expect(banner).to_have_class("error")
        expect(main).to_be_empty()
        no_trace(page)
        shoot(page, "error-store")
        r = api_from_page(page, "GET", "/console/views/runs?id=anything")
        assert r["status"] == 503
        assert r["json"]["error"] == "store_unavailable" and r["json"]["message"] == message
        assert "runs" not in json.dumps(r["json"]["details"])  # not even the table's name
        assert not any(m in r["text"] for m in TRACE_MARKERS), r["text"]


# -- 8. the network down ---------------------------------------------------------------------------


def test_with_the_network_failing_every_view_says_so_and_shows_nothing_half_drawn(
    console: Console, new_tab: Callable[[], Tab]
) -> None:
    tab = new_tab()
    page, main = tab.page, tab.page.locator("#main")
    banner = page.locator("#banner")
    sign_in(page, console.url, console.token("demo-admin", "admin"))
    expect(page.locator("#main h1")).to_have_text("Overview")
    page.route("**/console/views/**", lambda route: route.abort())
    page.route("**/v1/**", lambda route: route.abort())
    for name in VIEWS:
        page.click(f"#nav a[data-view='{name}']")
        expect(banner).to_have_text(
            "The gateway could not be reached (network error); nothing is shown until it answers."
        )
        expect(banner).to_have_class("error")
        expect(main).to_be_empty()
        if name == "log":
            shoot(page, "network-down")
    # Back up for views, still down for the API: a change says so beside its form, and the
    # log's proofs say they could not be checked (not a half-checked table).
    page.unroute("**/console/views/**")
    open_view(page, "log")
    expect(page.locator("#proof-status")).to_have_attribute("data-proofs", "failed")
    expect(page.locator("#proof-status")).to_contain_text(
        "Checkpoint not verified: the gateway could not be reached (network error)"
    )
    states = set(main.locator("td.proof").evaluate_all("c => c.map(x => x.dataset.state)"))
    assert states == {"failed"}
    open_view(page, "policies")
    page.locator("#policy-editor").get_by_role("button", name="Simulate").click()
    expect(page.locator("#policy-editor .result")).to_have_text(
        "the gateway could not be reached (network error)"
    )
    expect(page.locator("#policy-editor .result")).to_have_class(re.compile(r"\bbad\b"))

    # Signing in with the gateway unreachable: back at sign-in, with the reason.
    other = new_tab()
    other.page.route("**/console/views/**", lambda route: route.abort())
    sign_in(other.page, console.url, console.token("demo-admin", "admin"))
    expect(other.page.locator("#sign-in-message")).to_have_text(
        "The gateway could not be reached (network error); try again."
    )
    expect(other.page.locator("#app")).to_be_hidden()
