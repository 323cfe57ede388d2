"""SQL injection through every string that reaches the engine: dataset, column, purpose, a
subject's attribute values and the values in policy rules. Names are refused or denied before
any SQL; values travel as bound parameters, so a hostile value selects exactly the rows equal
to it (here: none), never more, and the Plan's rendered filter selects the same rows."""

from __future__ import annotations

import json
from typing import Any

import duckdb
import pyarrow.flight as flight
import pytest

from govern.catalog import ROW_ID
from govern.flight import FlightServer
from tests.conftest import TEST_ACTOR
from tests.security.scene import Scene, flight_options, flight_refusal

PAYLOADS = [
    "eu' OR '1'='1",
    "eu'; DROP TABLE ledger_entries; --",
    'eu" OR "1"="1',
    "eu\\' OR 1=1 --",
    "eu' UNION SELECT * FROM read_csv('/etc/passwd') --",
    "eu') OR TRUE OR ('",
    "' OR region IS NOT NULL OR '",
    "eu'||'",
    "eu\u2019 OR 1=1",  # a right single quote, which some engines fold to '
    "$$ OR TRUE $$",
]


def _read(scene: Scene, server: FlightServer, token: str, **fields: Any) -> list[int]:
    ticket = flight.Ticket(json.dumps({"purpose": "training", "run_id": "inj", **fields}).encode())
    with flight.connect(server.location) as client:
        table = client.do_get(ticket, flight_options(token)).read_all()
    return sorted(table.column(ROW_ID).to_pylist())


def _rows_where(scene: Scene, dataset: str, where: str, params: list[Any]) -> list[int]:
    """Row ids of the stored version matching ``where`` (run by the test's own DuckDB)."""
    path = scene.gateway.queries.dataset(dataset).path
    # The test pastes the Plan's rendered filter on purpose: it must be safe to paste.
    sql = f"SELECT {ROW_ID} FROM read_parquet(?) WHERE {where} ORDER BY 1"
    with duckdb.connect() as con:
        return [r[0] for r in con.execute(sql, [str(path), *params]).fetchall()]


def _decide(scene: Scene, role: str, **resource: Any) -> dict[str, Any]:
    purpose = resource.pop("purpose", "training")
    response = scene.client.post(
        "/v1/decisions",
        json={"resource": resource, "context": {"purpose": purpose}},
        headers=scene.headers(role),
    )
    assert response.status_code in (200, 422), response.text
    body: dict[str, Any] = response.json()
    return body


def test_hostile_dataset_column_and_purpose_strings_are_denied(
    scene: Scene, flight_of: FlightServer
) -> None:
    token = scene.tokens["trainer"]
    with scene.unchanged(), flight.connect(flight_of.location) as client:
        for payload in PAYLOADS:
            for resource in (
                {"dataset": f"patient_notes{payload}"},
                {"dataset": "patient_notes", "columns": ["note_id", f"region{payload}"]},
                {"dataset": "patient_notes", "purpose": f"training{payload}"},
            ):
                plan = _decide(scene, "trainer", **dict(resource))
                assert plan.get("decision", "deny") == "deny", (resource, plan)
                fields: dict[str, Any] = {"purpose": "training", "run_id": "inj"}
                fields |= {k: v for k, v in resource.items() if k != "columns"}
                if "columns" in resource:
                    fields["columns"] = resource["columns"]
                with pytest.raises(flight.FlightError) as caught:
                    client.do_get(
                        flight.Ticket(json.dumps(fields).encode()), flight_options(token)
                    ).read_all()
                assert flight_refusal(caught.value)["error"] in {
                    "bad_request",
                    "dataset_not_found",
                    "forbidden",
                }


def test_a_hostile_attribute_value_selects_only_rows_equal_to_it(
    scene: Scene, flight_of: FlightServer
) -> None:
    """The demo rule reads r.obj.region == r.sub.region: the trainer's stored region is bound,
    never pasted, so a value built to widen the filter matches no row at all."""
    token = scene.tokens["trainer"]
    honest = _read(scene, flight_of, token, dataset="patient_notes")
    assert honest  # region 'eu' matches rows: the hostile reads below could return some
    assert set(honest) <= set(_rows_where(scene, "patient_notes", "region = ?", ["eu"]))
    for payload in PAYLOADS:
        scene.gateway.commands.put_principal(
            "demo-trainer",
            ["trainer"],
            {"region": payload, "team": "foundation-models", "clearance": 2},
            TEST_ACTOR,
        )
        plan = _decide(scene, "trainer", dataset="patient_notes")
        assert plan["decision"] == "allow"
        served = _read(scene, flight_of, token, dataset="patient_notes")
        assert served == [], payload
        assert _rows_where(scene, "patient_notes", "region = ?", [payload]) == []
        # The rendered filter is safe to paste, too: it selects the same (no) rows.
        assert _rows_where(scene, "patient_notes", plan["row_filter"], []) == [], plan


def test_hostile_values_in_policy_rules_stay_values(scene: Scene, flight_of: FlightServer) -> None:
    rules = [list(r) for r in scene.gateway.queries.policy().rules]
    trainer = [r for r in rules if r[1] == "r.sub.role == 'trainer'" and r[2] == "patient_notes"]
    others = [r for r in rules if r not in trainer]
    token = scene.tokens["trainer"]
    for payload in PAYLOADS:
        literal = json.dumps(payload)  # a Python string literal of the payload
        for obj_rule in (
            f"r.obj.region == {literal}",
            f"r.obj.region in ({literal}, {json.dumps(payload + 'x')})",
            f"r.obj.diagnosis_code == {literal} or r.obj.region == {literal}",
        ):
            rule = ["p", "r.sub.role == 'trainer'", "patient_notes", "read", "training"]
            scene.gateway.commands.put_policy(
                None, [*others, [*rule, obj_rule, "allow"]], TEST_ACTOR
            )
            plan = _decide(scene, "trainer", dataset="patient_notes")
            assert plan["decision"] == "allow", plan
            assert _read(scene, flight_of, token, dataset="patient_notes") == [], obj_rule
            assert _rows_where(scene, "patient_notes", plan["row_filter"], []) == []


def test_a_rule_naming_a_column_the_dataset_lacks_denies(scene: Scene) -> None:
    """A column reached through r.obj must be one of the version's own columns; a name built
    to splice SQL is no column, and the decision denies rather than guessing."""
    rules = [list(r) for r in scene.gateway.queries.policy().rules]
    hostile = ["p", "r.sub.role == 'trainer'", "patient_notes", "read", "evaluation"]
    scene.gateway.commands.put_policy(
        None, [*rules, [*hostile, "r.obj.region_or_1 == 'eu'", "allow"]], TEST_ACTOR
    )
    with scene.unchanged():
        plan = _decide(scene, "trainer", dataset="patient_notes", purpose="evaluation")
        assert plan["decision"] == "deny", plan
