"""Language-model backends for compliance checks: ``local`` (embedded), ``openai``, ``none``;
``open_model`` picks the one the settings name."""

from __future__ import annotations

from govern.compliance.model.base import LanguageModel, ModelUnavailable, NoModel
from govern.settings import Settings

__all__ = ["LanguageModel", "ModelUnavailable", "NoModel", "open_model"]


def open_model(settings: Settings) -> LanguageModel:
    """The backend ``settings.llm_backend`` names. Nothing is loaded or contacted here."""
    backend = settings.llm_backend
    if backend == "none":
        return NoModel()
    if backend == "openai":
        from govern.compliance.model.openai import OpenAIModel

        return OpenAIModel.from_settings(settings)
    from govern.compliance.model.local import shared_local_model

    return shared_local_model(settings)
