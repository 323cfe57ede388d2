"""Quality suites are uploaded text too: Great Expectations hands a ``row_condition`` parsed
"pandas" to ``DataFrame.query``, which evaluates Python. Before the check a steward's suite
with ``@pd.io.common.os.system(...)`` as its row condition ran that command at the next upload.
Now such a suite is a 422, and one stored before the check never runs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from govern.store.models import Dataset, QualitySuite
from tests.conftest import raw_store
from tests.security.scene import Scene, refusal


def _suite(canary: str, parser: str = "pandas") -> dict[str, Any]:
    condition = f'@pd.io.common.os.system("touch {canary}") == 0'
    kwargs = {"column": "sid", "row_condition": condition, "condition_parser": parser}
    return {"expectations": [{"type": "expect_column_values_to_not_be_null", "kwargs": kwargs}]}


def _upload(scene: Scene, rows: bytes) -> Any:
    return scene.client.post(
        "/v1/datasets",
        data={"name": "uploaded", "subject_column": "sid"},
        files={"file": ("up.csv", rows, "text/csv")},
        headers=scene.headers("steward"),
    )


def test_a_suite_whose_row_condition_is_code_is_refused(scene: Scene) -> None:
    canary = scene.root / "canary"
    with scene.unchanged():
        for parser in ("pandas", "great_expectations", "python"):
            response = scene.client.put(
                "/v1/datasets/patient_notes/suite",
                json=_suite(str(canary), parser),
                headers=scene.headers("steward"),
            )
            body = refusal(response, 422)
            assert body["details"]["kwargs"] == ["condition_parser", "row_condition"]
    assert not canary.exists()


def test_a_code_suite_stored_before_the_check_never_runs(scene: Scene) -> None:
    canary = scene.root / "canary"
    assert _upload(scene, b"sid,v\ns1,1\ns2,2\n").status_code == 201
    db = raw_store(scene.gateway)
    try:
        with db.session() as s:
            dataset_id = s.scalars(select(Dataset.id).where(Dataset.name == "uploaded")).one()
            stored = s.scalars(
                select(QualitySuite).where(QualitySuite.dataset_id == dataset_id)
            ).one()
            stored.suite = _suite(str(canary))  # planted as an older release would have kept it
    finally:
        db.dispose()
    response = _upload(scene, b"sid,v\ns1,1\ns3,3\n")
    assert 400 <= response.status_code < 500, response.text
    assert refusal(response, response.status_code)["error"] == "invalid"
    assert not canary.exists()
    assert scene.gateway.queries.dataset("uploaded").version == 1
