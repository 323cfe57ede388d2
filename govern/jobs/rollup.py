"""An erasure request's state, rolled up from the jobs it started.

- ``completed``: nothing was excluded, or every job succeeded, or the jobs were planned and
  none was needed (no training run read the subject's rows, or none can be retrained: the
  request's ``affected_runs`` say which);
- ``failed``: a job gave up or was cancelled (the message names it);
- ``running``: some job was submitted, runs, or has finished while others have not;
- ``excluded``: the rows are excluded and no job has started yet (none planned, or all waiting
  to be submitted: the message then says why, e.g. that the backend is down).
"""

from __future__ import annotations

from collections.abc import Sequence

from govern.jobs.service import JobInfo

__all__ = ["roll_up"]


def roll_up(stored_state: str, excluded_rows: int, jobs: Sequence[JobInfo]) -> tuple[str, str]:
    """(state, message) of a request stored as ``stored_state`` with these jobs."""
    if excluded_rows == 0 or stored_state == "completed":
        return "completed", ""
    if not jobs:
        if stored_state == "planned":
            return "completed", (
                "no retrain or unlearn job was planned: affected_runs says why for each run"
            )
        return stored_state, ""
    ended = [j for j in jobs if j.state in ("failed", "cancelled")]
    if ended:
        j = ended[0]
        return "failed", f"job {j.id} ({j.kind} of run {j.run_id}) {j.state}: {j.message}"
    done = sum(1 for j in jobs if j.state == "succeeded")
    if done == len(jobs):
        return "completed", f"{done} job(s) succeeded"
    if done or any(j.state in ("submitted", "running") for j in jobs):
        return "running", f"{done} of {len(jobs)} job(s) finished"
    waiting = next((j for j in jobs if j.message), jobs[0])
    return "excluded", f"{len(jobs)} job(s) waiting: {waiting.message}"
