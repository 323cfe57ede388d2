"""What each console view shows: the table of views, who may open each, and the data it is
drawn from. Every view reads through ``gateway.queries``; the console changes nothing itself
(its forms call the REST API, so every change goes through the command layer and is logged).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from govern.auth import Action, Caller, ensure_allowed, is_allowed
from govern.errors import BadRequest, NotFound
from govern.events import EVENT_KINDS
from govern.gateway import Gateway

__all__ = ["VIEWS", "View", "allowed_views", "load"]

Params = Mapping[str, str]
Loader = Callable[[Gateway, Caller, Params], dict[str, Any]]


@dataclass(frozen=True)
class View:
    name: str
    title: str
    action: Action  # who may open it (the role table in govern.auth.roles)
    load: Loader


def _may(caller: Caller, action: Action) -> bool:
    return is_allowed(caller.role, action)


def _int(params: Params, name: str, default: int, low: int = 0, high: int = 2**53) -> int:
    raw = params.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number", details={name: raw[:40]}) from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}", details={name: value})
    return value


def _time(params: Params, name: str) -> datetime | None:
    raw = params.get(name, "").strip()
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        raise BadRequest(
            f"{name} must be an ISO 8601 time, e.g. 2026-12-05T14:00",
            details={name: raw[:40]},
        ) from None


def _text(params: Params, name: str, limit: int = 300) -> str | None:
    value = params.get(name, "").strip()
    return value[:limit] or None


# -- the views ---------------------------------------------------------------------------------


def _overview(gateway: Gateway, caller: Caller, params: Params) -> dict[str, Any]:
    q = gateway.queries
    ctx: dict[str, Any] = {"anchor": q.anchor_status()}
    if _may(caller, Action.LEDGER_READ_ALL):
        activity = q.activity(caller, minutes=_int(params, "minutes", 60, 5, 24 * 60))
        ctx["activity"] = activity
        ctx["chart"] = {
            "x": [datetime.fromisoformat(m).timestamp() for m in activity.minutes],
            "series": [
                {"label": "allowed", "values": activity.allowed},
                {"label": "denied", "values": activity.denied},
            ],
        }
    if _may(caller, Action.COMPLIANCE_READ):
        ctx["open_reviews"] = len(q.reviews("open"))
    if _may(caller, Action.ERASURE_READ):
        ctx["erasures_in_flight"] = [r for r in q.erasure_requests() if r.state != "completed"]
    ctx["datasets"] = q.datasets()
    return ctx


def _log(gateway: Gateway, caller: Caller, params: Params) -> dict[str, Any]:
    search = {
        "actor": _text(params, "actor", 200),
        "kind": _text(params, "kind", 32),
        "dataset": _text(params, "dataset", 63),
        "run": _text(params, "run", 200),
        "purpose": _text(params, "purpose", 100),
    }
    since, until = _time(params, "since"), _time(params, "until")
    before = _int(params, "before", 0)
    rows = gateway.queries.search_log(
        caller, **search, since=since, until=until, before=before, limit=50
    )
    return {
        "rows": rows,
        "search": {k: v or "" for k, v in search.items()},
        "since": params.get("since", ""),
        "until": params.get("until", ""),
        "older": rows[-1].index if len(rows) == 50 else None,
        "all_entries": _may(caller, Action.LEDGER_READ_ALL),
        "kinds": sorted(EVENT_KINDS),  # every kind the log may hold, for the search's list
    }


def _ledger(gateway: Gateway, caller: Caller, params: Params) -> dict[str, Any]:
    head, covering = gateway.queries.checkpoint()
    return {
        "head": head,
        "covering": covering,
        "checkpoints": gateway.queries.checkpoints(),
        "anchors": list(reversed(gateway.queries.anchors()))[:50],
        "key": gateway.queries.verifier_key(),
    }


def _datasets(gateway: Gateway, caller: Caller, params: Params) -> dict[str, Any]:
    q = gateway.queries
    name = _text(params, "name", 63)
    ctx: dict[str, Any] = {"datasets": q.datasets(), "writer": _may(caller, Action.DATASETS_WRITE)}
    if name is None:
        return ctx
    versions = q.versions(name)
    chosen = _int(params, "version", versions[-1].version if versions else 1, 1)
    quality = None
    with contextlib.suppress(NotFound):  # registered without a quality check (the demo's)
        quality = q.quality_result(name, chosen)
    results = quality.result.get("results", []) if quality else []
    ctx.update(
        name=name,
        versions=versions,
        version=next((v for v in versions if v.version == chosen), None),
        quality=quality,
        failed=[r for r in results if not r["success"]],
    )
    return ctx


def _policies(gateway: Gateway, caller: Caller, params: Params) -> dict[str, Any]:
    policy = gateway.queries.policy()
    return {
        "policy": policy,
        # One rule a line: a rule reads (and is edited) as the row it is in the CSV.
        "rules_json": "[\n" + ",\n".join(json.dumps(list(r)) for r in policy.rules) + "\n]",
        "writer": _may(caller, Action.POLICIES_WRITE),
    }


def _compliance(gateway: Gateway, caller: Caller, params: Params) -> dict[str, Any]:
    q = gateway.queries
    return {
        "reviews": q.reviews("open"),
        "assessments": q.assessments(limit=_int(params, "limit", 50, 1, 500)),
        "decider": _may(caller, Action.REVIEWS_DECIDE),
    }


def _erasure(gateway: Gateway, caller: Caller, params: Params) -> dict[str, Any]:
    q = gateway.queries
    requests = list(reversed(q.erasure_requests()))
    rid = _text(params, "id", 64)
    return {
        "requests": requests,
        "detail": q.erasure_request(rid) if rid else None,
        "writer": _may(caller, Action.ERASURE_WRITE),
        # The page polls while some request is still at work.
        "live": any(r.state not in ("completed", "failed") for r in requests),
    }


def _runs(gateway: Gateway, caller: Caller, params: Params) -> dict[str, Any]:
    q = gateway.queries
    rid = _text(params, "id", 200)
    return {"runs": q.runs(), "detail": q.run_view(caller, rid) if rid else None}


VIEWS: dict[str, View] = {
    v.name: v
    for v in (
        View("overview", "Overview", Action.LEDGER_READ, _overview),
        View("log", "Access log", Action.LEDGER_READ, _log),
        View("ledger", "Ledger", Action.LEDGER_READ, _ledger),
        View("datasets", "Datasets", Action.DATASETS_READ, _datasets),
        View("policies", "Policies", Action.POLICIES_READ, _policies),
        View("compliance", "Compliance", Action.COMPLIANCE_READ, _compliance),
        View("erasure", "Erasure", Action.ERASURE_READ, _erasure),
        View("runs", "Runs", Action.RUNS_READ, _runs),
    )
}


def allowed_views(caller: Caller) -> list[View]:
    if not _may(caller, Action.CONSOLE):
        return []
    return [v for v in VIEWS.values() if _may(caller, v.action)]


def load(gateway: Gateway, caller: Caller, name: str, params: Params) -> dict[str, Any]:
    """The view's data; 403 for a role the console or the view is not for."""
    view = VIEWS.get(name)
    if view is None:
        raise NotFound(f"no console view {name[:40]!r}", details={"view": name[:40]})
    ensure_allowed(caller.role, Action.CONSOLE)
    ensure_allowed(caller.role, view.action)
    return view.load(gateway, caller, params)
