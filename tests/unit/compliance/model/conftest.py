from __future__ import annotations

from tests.unit.compliance.model.fixtures import local_model

__all__ = ["local_model"]
