"""Which language model the pipeline asks: the configured backend, opened on first use."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from govern.compliance.model import LanguageModel, open_model
from govern.errors import GovernError, ModelUnavailable
from govern.settings import Settings

__all__ = ["ModelHolder", "ModelStatus"]


@dataclass(frozen=True)
class ModelStatus:
    """What /readyz and /metrics say about the model: the backend, its name, and its state
    (``ready``, ``idle``, ``converting``, ``loading``, ``failed``, ``unavailable``, ``none``)."""

    backend: str
    name: str
    state: str
    detail: str = ""

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": self.backend, "name": self.name, "state": self.state}
        if self.detail:
            out["detail"] = self.detail
        return out


class ModelHolder:
    """The configured backend, opened on first use (never at import or start-up unless asked),
    or one set explicitly (tests share one loaded model this way)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._model: LanguageModel | None = None
        self._error: GovernError | None = None
        self._lock = threading.Lock()

    def set(self, model: LanguageModel) -> None:
        with self._lock:
            self._model, self._error = model, None

    def get(self) -> LanguageModel:
        with self._lock:
            if self._model is None and self._error is None:
                try:
                    self._model = open_model(self._settings)
                except GovernError as exc:
                    self._error = exc
            if self._model is None:
                msg = self._error.message if self._error else "no model"
                raise ModelUnavailable(f"the language model cannot be opened: {msg}")
            return self._model

    def status(self) -> ModelStatus:
        """The model's state now; never loads it (opening a backend contacts nothing)."""
        backend = self._settings.llm_backend
        try:
            model = self.get()
        except ModelUnavailable as exc:
            return ModelStatus(backend, "", "failed", exc.message)
        return ModelStatus(backend, model.name, model.state())

    def prepare(self, progress: Callable[[str], None] | None = None) -> bool:
        """The backend's one-off work ahead of serving (converting the local model's GGUF);
        True when there was some. A backend that cannot be opened raises ModelUnavailable."""
        return self.get().prepare(progress)

    def start(self) -> None:
        # A model that cannot be opened is reported on first use, as needs_review.
        with contextlib.suppress(ModelUnavailable):
            self.get().start()
