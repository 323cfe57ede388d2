from __future__ import annotations

from govern.demo import DEMO_DATASETS, DEMO_PRINCIPALS, load_demo
from govern.demo.load import DEMO_ACTOR
from govern.gateway import Gateway


def test_demo_loads_datasets_with_subject_columns_and_principals_once(
    sqlite_gateway: Gateway,
) -> None:
    g = sqlite_gateway
    seen: list[tuple[str, int, int]] = []
    written = load_demo(g, lambda n, d, t: seen.append((n, d, t)), scale=0.05)
    assert written == [d.name for d in DEMO_DATASETS]
    for demo in DEMO_DATASETS:
        info = g.queries.dataset(demo.name)
        assert info.row_count == int(demo.rows * 0.05)
        assert info.subject_column == demo.subject_column
        assert any(c.tags for c in info.columns)
    assert {p.id for p in g.queries.principals()} >= {
        "demo-admin",
        "demo-steward",
        "demo-auditor",
        "demo-trainer",
    }
    assert seen[-1][1] == seen[-1][2]  # progress reached its total
    # Every change went through the command layer and was logged as the demo's.
    logged = [v.entry for v in g.queries.ledger_entries(g.operator, limit=100_000)]
    assert {e["actor"] for e in logged} == {DEMO_ACTOR}
    assert [e["object"] for e in logged if e["kind"] == "dataset.version"] == [
        f"dataset:{d.name}/v1" for d in DEMO_DATASETS
    ]
    assert sum(e["kind"] == "policy.put" for e in logged) == 1
    # A second run changes nothing, and so logs nothing.
    size = g.queries.log_size()
    assert load_demo(g, scale=0.05) == []
    assert g.queries.log_size() == size
    assert g.queries.dataset("patient_notes").version == 1
    assert {p.id for p in DEMO_PRINCIPALS} <= {p.id for p in g.queries.principals()}


def test_demo_datasets_are_realistic_sizes() -> None:
    for demo in DEMO_DATASETS:
        assert 10_000 <= demo.rows <= 100_000
