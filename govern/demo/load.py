"""``govern demo load``: demo principals, datasets and policies. Safe to run twice."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from govern.demo.datasets import DEMO_DATASETS, DemoDataset
from govern.errors import DatasetNotFound, VersionNotFound
from govern.gateway import Gateway
from govern.policy.files import read_rules
from govern.policy.service import default_model_text
from govern.resources import policies_dir

__all__ = ["DEMO_PRINCIPALS", "DemoPrincipal", "load_demo"]


@dataclass(frozen=True)
class DemoPrincipal:
    id: str
    roles: tuple[str, ...]
    attributes: dict[str, Any]
    display_name: str


DEMO_PRINCIPALS: tuple[DemoPrincipal, ...] = (
    DemoPrincipal("demo-admin", ("admin",), {}, "Demo platform admin"),
    DemoPrincipal("demo-steward", ("steward",), {"region": "eu"}, "Demo data steward"),
    DemoPrincipal("demo-auditor", ("auditor",), {}, "Demo auditor"),
    DemoPrincipal("demo-compliance", ("compliance",), {}, "Demo compliance officer"),
    DemoPrincipal(
        "demo-trainer",
        ("trainer",),
        {"region": "eu", "team": "foundation-models", "clearance": 2},
        "Demo ML trainer",
    ),
)

# progress(dataset name, rows done, rows total)
Progress = Callable[[str, int, int], None]


def load_demo(gateway: Gateway, progress: Progress | None = None, scale: float = 1.0) -> list[str]:
    """Create what is missing; return the names of the datasets written this time."""
    for p in DEMO_PRINCIPALS:
        gateway.principals.upsert(p.id, list(p.roles), p.attributes, display_name=p.display_name)
    if gateway.policy.store.latest_version() is None:
        rules = read_rules(policies_dir() / "demo.csv")
        gateway.put_policy(default_model_text(), rules, "demo")
    written = []
    for demo in DEMO_DATASETS:
        try:
            gateway.catalog.get(demo.name)
            continue
        except (DatasetNotFound, VersionNotFound):
            pass
        total = max(1, int(demo.rows * scale))
        info = gateway.catalog.register_version(
            demo.name,
            _counted(demo, total, progress),
            demo.subject_column,
            description=demo.description,
            tags=demo.tags,
        )
        gateway.log(
            "dataset.version",
            {"dataset": info.name, "version": info.version, "rows": info.row_count},
            "demo",
        )
        written.append(demo.name)
    return written


def _counted(demo: DemoDataset, total: int, progress: Progress | None) -> Iterator[pa.RecordBatch]:
    done = 0
    for batch in demo.batches(total):
        done += batch.num_rows
        if progress:
            progress(demo.name, done, total)
        yield batch
