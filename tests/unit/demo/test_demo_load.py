from __future__ import annotations

from govern.demo import DEMO_DATASETS, DEMO_PRINCIPALS, load_demo
from govern.gateway import Gateway


def test_demo_loads_datasets_with_subject_columns_and_principals_once(
    sqlite_gateway: Gateway,
) -> None:
    seen: list[tuple[str, int, int]] = []
    written = load_demo(sqlite_gateway, lambda n, d, t: seen.append((n, d, t)), scale=0.05)
    assert written == [d.name for d in DEMO_DATASETS]
    for demo in DEMO_DATASETS:
        info = sqlite_gateway.catalog.get(demo.name)
        assert info.row_count == int(demo.rows * 0.05)
        assert info.subject_column == demo.subject_column
        assert any(c.tags for c in info.columns)
    assert {p.id for p in sqlite_gateway.principals.all()} >= {
        "demo-admin",
        "demo-steward",
        "demo-auditor",
        "demo-trainer",
    }
    assert seen[-1][1] == seen[-1][2]  # progress reached its total
    # A second run changes nothing.
    assert load_demo(sqlite_gateway, scale=0.05) == []
    assert sqlite_gateway.catalog.get("patient_notes").version == 1
    assert {p.id for p in DEMO_PRINCIPALS} <= {p.id for p in sqlite_gateway.principals.all()}


def test_demo_datasets_are_realistic_sizes() -> None:
    for demo in DEMO_DATASETS:
        assert 10_000 <= demo.rows <= 100_000
