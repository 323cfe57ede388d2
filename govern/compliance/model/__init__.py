"""Language-model backends for compliance checks: ``local`` (embedded), ``openai``, ``none``."""

from __future__ import annotations

from govern.compliance.model.base import LanguageModel, ModelUnavailable, NoModel, open_model

__all__ = ["LanguageModel", "ModelUnavailable", "NoModel", "open_model"]
