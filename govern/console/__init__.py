"""The admin audit console (``/console``): what the gateway decided, served and proved, for
auditors, stewards and compliance officers. Server-rendered views over ``gateway.queries``;
changes go through the REST API, so through the command layer. See docs/console.md."""

from __future__ import annotations

from govern.console.routes import mount_console

__all__ = ["mount_console"]
