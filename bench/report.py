"""Where every benchmark leaves its result: one JSON line on stdout and in
``bench/results/<name>.json``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def emit(name: str, result: Mapping[str, Any]) -> None:
    line = json.dumps(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(line + "\n")
    print(line, flush=True)
