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

__all__ = ["DEMO_ACTOR", "DEMO_PRINCIPALS", "DemoPrincipal", "load_demo"]

# The actor the access log names for the demo's changes.
DEMO_ACTOR = "demo"


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
    """Create what is missing; return the names of the datasets written this time. Every
    change goes through the command layer, logged with ``DEMO_ACTOR`` as its actor."""
    commands, queries = gateway.commands, gateway.queries
    have = {p.id: p for p in queries.principals()}
    for p in DEMO_PRINCIPALS:
        existing = have.get(p.id)
        if existing is not None and (
            existing.roles,
            dict(existing.attributes),
            existing.display_name,
            existing.disabled,
        ) == (p.roles, p.attributes, p.display_name, False):
            continue  # nothing to change, so nothing to log
        commands.put_principal(
            p.id, list(p.roles), p.attributes, DEMO_ACTOR, display_name=p.display_name
        )
    if queries.policy().version is None:
        rules = read_rules(policies_dir() / "demo.csv")
        commands.put_policy(default_model_text(), rules, DEMO_ACTOR)
    written = []
    for demo in DEMO_DATASETS:
        try:
            queries.dataset(demo.name)
            continue
        except (DatasetNotFound, VersionNotFound):
            pass
        total = max(1, int(demo.rows * scale))
        commands.register_dataset(
            demo.name,
            _counted(demo, total, progress),
            demo.subject_column,
            DEMO_ACTOR,
            description=demo.description,
            tags=demo.tags,
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
