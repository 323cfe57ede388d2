"""The REST API (FastAPI): routes per resource under /v1, one error shape, bearer tokens."""

from __future__ import annotations

from govern.api.app import create_app

__all__ = ["create_app"]
