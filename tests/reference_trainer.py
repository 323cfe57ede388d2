"""The reference trainer (``examples/train_reference.py``) loaded as a module, for the tests
that train, read and unlearn through it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def reference_trainer() -> Any:
    spec = importlib.util.spec_from_file_location(
        "train_reference", ROOT / "examples" / "train_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_reference"] = module  # spawned DataLoader workers import it by name
    spec.loader.exec_module(module)
    return module
