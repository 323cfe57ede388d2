"""``docs/events.md``, generated from the event classes: every kind, what its object names, and
its data's fields. ``python -m govern.events > docs/events.md`` writes it (``--json-schema``
prints the JSON schemas instead); a test fails when the file and the classes differ."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from pydantic import TypeAdapter

from govern.events.base import EVENT_KINDS, Event

__all__ = ["event_schema", "json_schemas", "markdown"]

_HEADER = """# Access-log events

Generated from `govern/events/kinds.py` by `python -m govern.events`; a test keeps the two in
step (`python -m govern.events --json-schema` prints each kind's JSON schema). Every change of
state, decision and read is one of these, written to the access log by
the one path that makes it (invariant 7, `docs/invariants.md`). Each leaf is the RFC 8785
canonical JSON of

```json
{"kind": "<kind>", "time": "<ISO 8601, UTC>", "actor": "<principal or worker>",
 "object": "<what it is about>", "data": {<the fields below>}}
```

No event holds a data subject's identifier, a row value, or free text: a subject appears only as
`subject_commitment` (HMAC-SHA256 under the deployment's commitment key), free text only as its
length or a keyed digest (invariant 8).

"""


def event_schema(cls: type[Event]) -> dict[str, Any]:
    """The JSON schema of an event's ``data``."""
    schema: dict[str, Any] = TypeAdapter(cls).json_schema()
    return schema


def _object_pattern(cls: type[Event]) -> str:
    # Placeholders in place of every field show the shape object_ref gives the object.
    sample = cls(**{f.name: f"<{f.name}>" for f in dataclasses.fields(cls)})
    return sample.object_ref()


def _type(prop: dict[str, Any]) -> str:
    if "anyOf" in prop:
        return " or ".join(_type(p) for p in prop["anyOf"])
    kind = prop.get("type")
    if kind == "array":
        items = prop.get("items") or prop.get("prefixItems")
        if isinstance(items, dict):
            return f"array of {_type(items)}"
        return "array"
    if kind == "object":
        extra = prop.get("additionalProperties")
        return f"object of {_type(extra)}" if isinstance(extra, dict) else "object"
    return str(kind) if kind else "any JSON"


def markdown() -> str:
    out = [_HEADER]
    for kind in sorted(EVENT_KINDS):
        cls = EVENT_KINDS[kind]
        schema = event_schema(cls)
        required = set(schema.get("required", []))
        doc = " ".join((cls.__doc__ or "").split())
        out.append(f"## `{kind}`\n")
        if doc:
            out.append(f"{doc}\n")
        out.append(f"Class `{cls.__name__}`; object `{_object_pattern(cls)}`.\n")
        out.append("| field | type | required |\n| --- | --- | --- |")
        for name, prop in schema.get("properties", {}).items():
            out.append(f"| `{name}` | {_type(prop)} | {'yes' if name in required else 'no'} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def json_schemas() -> str:
    """Every kind's JSON schema, as one JSON object keyed by kind (for validators)."""
    schemas = {kind: event_schema(EVENT_KINDS[kind]) for kind in sorted(EVENT_KINDS)}
    return json.dumps(schemas, indent=2, sort_keys=True) + "\n"
