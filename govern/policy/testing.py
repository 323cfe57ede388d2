"""``govern policy test``: policy test files, run through the real decision and engine path.

A test file (YAML) names a model and rules, declares small datasets inline, and lists cases:
a subject, a dataset, a purpose, and what is expected — the decision, which rows (by their
index in the inline data) the Plan serves, and column actions. Every case is also checked
row by row against ``casbin.Enforcer.enforce``, so a test file doubles as a check that the
compiled filter means what Casbin means.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from govern.catalog import ROW_ID, ColumnInfo, DatasetInfo
from govern.catalog.service import _write_parquet
from govern.catalog.types import normalise_schema
from govern.engine import Engine
from govern.errors import GovernError, PolicyInvalid
from govern.policy.compiler import casbin_request
from govern.policy.files import read_rules
from govern.policy.loaded import LoadedPolicy
from govern.policy.service import PolicyService

__all__ = ["CaseResult", "run_file"]

_ARROW = {
    "VARCHAR": pa.string(),
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us"),
}


@dataclass
class CaseResult:
    file: str
    name: str
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _dataset(
    name: str, spec: dict[str, Any], folder: Path
) -> tuple[DatasetInfo, list[dict[str, Any]]]:
    columns: dict[str, str] = spec["columns"]
    rows: list[dict[str, Any]] = spec.get("rows", [])
    schema = pa.schema([(c, _ARROW[t]) for c, t in columns.items()])
    table = pa.Table.from_pylist(rows, schema=schema)
    path = folder / f"{name}.parquet"
    _write_parquet(path, table.to_batches(), normalise_schema(schema))
    tags = spec.get("tags", {})
    info = DatasetInfo(
        name=name,
        version=1,
        version_id=0,
        path=path,
        row_count=len(rows),
        subject_column=spec.get("subject_column", next(iter(columns))),
        columns=tuple(ColumnInfo(c, t, tuple(tags.get(c, []))) for c, t in columns.items()),
        mask_salt="policy-test",
        state="active",
    )
    return info, rows


def run_file(path: Path, policy: LoadedPolicy | None = None) -> list[CaseResult]:
    """Run one test file; ``policy`` overrides the model and rules the file names."""
    spec = yaml.safe_load(path.read_text())
    if not isinstance(spec, dict) or "cases" not in spec:
        raise PolicyInvalid(f"{path}: a policy test file needs 'cases'")
    if policy is None:
        model = (path.parent / spec["model"]).read_text()
        policy = LoadedPolicy.build(model, read_rules(path.parent / spec["rules"]), 0)
    enforcer = policy.enforcer()
    service = PolicyService.__new__(PolicyService)  # decide() needs no store
    engine = Engine(threads=1, memory_limit="256MB")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        datasets = {n: _dataset(n, d, Path(tmp)) for n, d in (spec.get("datasets") or {}).items()}
        for i, case in enumerate(spec["cases"]):
            result = CaseResult(str(path), case.get("name", f"case {i + 1}"))
            results.append(result)
            try:
                _run_case(case, datasets, policy, service, engine, enforcer, result)
            except (GovernError, KeyError, TypeError) as exc:
                result.failures.append(f"error: {exc}")
    engine.close()
    return results


def _run_case(
    case: dict[str, Any],
    datasets: dict[str, tuple[DatasetInfo, list[dict[str, Any]]]],
    policy: LoadedPolicy,
    service: PolicyService,
    engine: Engine,
    enforcer: Any,
    result: CaseResult,
) -> None:
    info, rows = datasets[case["dataset"]]
    subject = dict(case["subject"])
    purpose = case["purpose"]
    action = case.get("action", "read")
    plan = service.decide(
        subject=subject,
        dataset=info,
        action=action,
        purpose=purpose,
        columns=case.get("columns"),
        policy=policy,
    )
    expect = case.get("expect", {})
    if "decision" in expect and plan.decision != expect["decision"]:
        result.failures.append(
            f"decision: expected {expect['decision']}, got {plan.decision} "
            f"({'; '.join(plan.reasons)})"
        )
    served: list[int] = []
    if plan.allowed:
        served = sorted(engine.table(info, plan).column(ROW_ID).to_pylist())
    if "rows" in expect:
        want = sorted(expect["rows"])
        if served != want:
            extra = sorted(set(served) - set(want))
            missing = sorted(set(want) - set(served))
            result.failures.append(
                f"rows: expected {want}, got {served} (unexpected {extra}, missing {missing})"
            )
    for column, want_action in (expect.get("columns") or {}).items():
        got = plan.columns.get(column)
        if got != want_action:
            result.failures.append(f"column {column}: expected {want_action}, got {got}")
    # The compiled filter must agree with Casbin on every row (invariant 3).
    casbin_rows = []
    for idx, row in enumerate(rows):
        sub, obj = casbin_request(subject, info.name, row)
        try:
            if enforcer.enforce(sub, obj, action, purpose):
                casbin_rows.append(idx)
        except Exception:  # noqa: S112 - Casbin raising is "not allowed"
            continue
    if plan.allowed and served != casbin_rows:
        result.failures.append(f"semantics: SQL served {served}, Casbin allows {casbin_rows}")
