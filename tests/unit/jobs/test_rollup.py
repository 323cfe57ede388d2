"""An erasure request's state from its jobs' states."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from govern.jobs import JobInfo, JobSpec
from govern.jobs.rollup import roll_up

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def job(state: str, n: int = 0, message: str = "") -> JobInfo:
    spec = JobSpec(kind="retrain", run_id=f"run-{n}", principal_id="p", argv=("x",))
    return JobInfo(
        id=f"job-{n}",
        request_id="er",
        backend="local",
        kind="retrain",
        state=state,
        run_id=spec.run_id,
        principal_id="p",
        attempts=1,
        external_id=None,
        message=message,
        spec=spec,
        created_at=NOW,
        updated_at=NOW,
    )


@pytest.mark.parametrize(
    ("stored", "rows", "states", "expected"),
    [
        ("completed", 0, [], "completed"),  # unknown subject: nothing excluded
        ("excluded", 0, [], "completed"),
        ("excluded", 5, [], "excluded"),  # jobs not planned yet
        ("planned", 5, [], "completed"),  # planned, and no run read the rows
        ("planned", 5, ["pending", "retrying"], "excluded"),  # none started
        ("planned", 5, ["submitted", "pending"], "running"),
        ("planned", 5, ["running", "succeeded"], "running"),
        ("planned", 5, ["succeeded", "pending"], "running"),
        ("planned", 5, ["succeeded", "succeeded"], "completed"),
        ("planned", 5, ["succeeded", "failed"], "failed"),
        ("planned", 5, ["running", "cancelled"], "failed"),
    ],
)
def test_request_state_follows_its_jobs(
    stored: str, rows: int, states: list[str], expected: str
) -> None:
    jobs = [job(s, i) for i, s in enumerate(states)]
    assert roll_up(stored, rows, jobs)[0] == expected


def test_the_message_says_why_a_request_waits_or_failed() -> None:
    waiting = [job("retrying", 0, "Ray at http://x is unreachable"), job("pending", 1)]
    state, message = roll_up("planned", 3, waiting)
    assert state == "excluded" and "2 job(s) waiting: Ray at http://x is unreachable" in message
    state, message = roll_up("planned", 3, [job("succeeded"), job("failed", 1, "exit code 2")])
    assert state == "failed"
    assert message == "job job-1 (retrain of run run-1) failed: exit code 2"
