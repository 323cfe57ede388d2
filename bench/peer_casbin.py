"""The peer a user would write instead of govern for decisions over REST: FastAPI and pycasbin,
one ``enforce`` per request on the demo's model and rules, nothing logged. Run by
``bench/load.py`` as its own process: ``python bench/peer_casbin.py --port P``.

pycasbin's matcher evaluation is not safe across threads (STACK.md), so ``enforce`` runs under a
lock, as a careful peer would write it.
"""

from __future__ import annotations

import argparse
import threading
from types import SimpleNamespace
from typing import Any

import casbin
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from govern.policy.files import read_rules
from govern.policy.store import PolicySetAdapter
from govern.resources import policies_dir

# One representative row of patient_notes: the peer decides per request, not per row.
ROW = {
    "dataset": "patient_notes",
    "consent_research": True,
    "region": "eu",
    "age": 40,
}
SUBJECTS = {
    "demo-trainer": {"id": "demo-trainer", "role": "trainer", "region": "eu", "clearance": 2}
}


class DecisionIn(BaseModel):
    action: str = "read"
    resource: dict[str, Any]
    context: dict[str, Any]


def build() -> FastAPI:
    enforcer = casbin.Enforcer(
        str(policies_dir() / "model.conf"),
        PolicySetAdapter([r for r in read_rules(policies_dir() / "demo.csv") if r[0] == "p"]),
    )
    lock = threading.Lock()
    app = FastAPI()

    @app.post("/v1/decisions")
    def decide(body: DecisionIn) -> dict[str, Any]:
        sub = SimpleNamespace(**SUBJECTS["demo-trainer"])
        obj = SimpleNamespace(**{**ROW, "dataset": body.resource["dataset"]})
        with lock:
            allowed = enforcer.enforce(sub, obj, body.action, body.context["purpose"])
        return {"decision": "allow" if allowed else "deny"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(build(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
