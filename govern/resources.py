"""Where the files that ship beside the code live: migrations/ and policies/.

In a source checkout they sit at the repository root; in a built wheel (the Docker image) hatch
copies them into the package as ``govern/_migrations`` and ``govern/_policies``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["migrations_dir", "policies_dir"]

_PACKAGE = Path(__file__).resolve().parent


def _find(packaged: str, checkout: str) -> Path:
    inside = _PACKAGE / packaged
    if inside.is_dir():
        return inside
    return _PACKAGE.parent / checkout


def migrations_dir() -> Path:
    return _find("_migrations", "migrations")


def policies_dir() -> Path:
    return _find("_policies", "policies")
