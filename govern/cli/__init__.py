"""The ``govern`` command line."""

from __future__ import annotations

from govern.cli.main import app, main

__all__ = ["app", "main"]
