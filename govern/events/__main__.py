"""``python -m govern.events``: print docs/events.md (``--json-schema``: the JSON schemas)."""

from __future__ import annotations

import sys

from govern.events.schema import json_schemas, markdown

sys.stdout.write(json_schemas() if "--json-schema" in sys.argv[1:] else markdown())
