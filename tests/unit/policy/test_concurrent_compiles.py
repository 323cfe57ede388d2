"""Compiles racing on one policy set: Casbin's and simpleeval's evaluation over a shared model
is not safe across threads. Without the set's evaluation lock about one concurrent compile in a
thousand came out FALSE (nothing served) instead of the subject's filter; with the interpreter
switching threads as often as it can, this test failed on every run before the fix. Every
concurrent compile must equal the same compile made alone."""

from __future__ import annotations

import sys
import threading
from typing import Any

from govern.plan import rowfilter
from govern.policy.files import read_rules
from govern.policy.loaded import LoadedPolicy
from govern.policy.service import default_model_text
from govern.resources import policies_dir

COLUMNS = {"consent_research": "BOOLEAN", "region": "VARCHAR", "age": "BIGINT", "note": "VARCHAR"}
SUBJECTS = 60
TRIALS = 30


def _subject(i: int) -> dict[str, Any]:
    return {
        "id": f"t{i}",
        "role": "trainer",
        "region": ("eu", "us", "apac")[i % 3],
        "clearance": i % 4,
    }


def _sql(policy: LoadedPolicy, i: int) -> str:
    compiled = policy.row_filter(_subject(i), "read", "training", "patient_notes", COLUMNS)
    return str(rowfilter.to_sql(compiled))


def test_concurrent_compiles_equal_the_serial_ones() -> None:
    # Switch threads as often as the interpreter can, so the races show up in a short test.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        _compile_concurrently()
    finally:
        sys.setswitchinterval(interval)


def _compile_concurrently() -> None:
    rules = read_rules(policies_dir() / "demo.csv")
    alone = LoadedPolicy.build(default_model_text(), rules, 1)
    want = {i: _sql(alone, i) for i in range(SUBJECTS)}
    assert len(set(want.values())) > 1  # the subjects really differ
    wrong = []
    for _ in range(TRIALS):
        policy = LoadedPolicy.build(default_model_text(), rules, 1)  # a cold cache each time
        got: dict[int, str] = {}

        def compile_for(i: int, policy: LoadedPolicy = policy, got: dict[int, str] = got) -> None:
            got[i] = _sql(policy, i)

        threads = [threading.Thread(target=compile_for, args=(i,)) for i in range(SUBJECTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wrong += [i for i in range(SUBJECTS) if got.get(i) != want[i]]
    assert wrong == []
