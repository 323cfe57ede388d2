"""govern: a data-governance gateway in front of ML training data."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
