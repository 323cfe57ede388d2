"""The language-model interface the compliance pipeline scores labels through.

A backend answers one question: how likely is each of a fixed set of labels as the assistant's
reply to a prompt. The pipeline never parses free text; it compares these scores (after
calibration) and turns ``ModelUnavailable`` into ``needs_review``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from govern.errors import ModelUnavailable, PromptTooLong, ValidationError

__all__ = ["LanguageModel", "ModelUnavailable", "NoModel", "PromptTooLong"]


class LanguageModel(ABC):
    """A scorer of constrained answers. Implementations are thread-safe."""

    name: str

    @abstractmethod
    def ready(self) -> bool:
        """Whether the model is loaded and usable now (False while loading or when down)."""

    @abstractmethod
    def label_logprobs(self, prompt: str, labels: Sequence[str]) -> dict[str, float]:
        """Length-normalised log-likelihood of each label as the reply to ``prompt``.

        The prompt is sent as one user turn through the model's chat template; each label's score
        is the mean log-probability of its tokens as the start of the assistant's reply. Raises
        ``ModelUnavailable`` when the backend is down or still loading, ``PromptTooLong`` (422)
        when the prompt does not fit the model's context window.
        """

    def state(self) -> str:
        """One word for /readyz and /metrics: ``ready`` or ``unavailable`` here; a backend that
        loads says which phase it is in (``idle``, ``converting``, ``loading``, ``failed``)."""
        return "ready" if self.ready() else "unavailable"

    def prepare(self, progress: Callable[[str], None] | None = None) -> bool:
        """Do ahead of serving whatever slow one-off work the backend needs (``govern model
        prepare``); True when there was some. Nothing, for remote backends."""
        return False

    def start(self) -> None:  # noqa: B027 - optional hook, a no-op for remote backends
        """Begin loading in the background, if the backend loads anything; never blocks."""

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Start loading if needed, wait up to ``timeout`` seconds, say whether usable. One-shot
        callers (the CLI) use this; the gateway never waits."""
        self.start()
        return self.ready()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections or memory held by the backend."""


def check_labels(labels: Sequence[str]) -> list[str]:
    """Labels must be distinct, non-empty strings; order is kept."""
    out = list(labels)
    if not out:
        raise ValidationError("at least one label is needed")
    if any(not isinstance(label, str) or not label.strip() for label in out):
        raise ValidationError("labels must be non-empty strings")
    if len(set(out)) != len(out):
        raise ValidationError("labels must be distinct", details={"labels": out})
    return out


def require_finite(scores: dict[str, float], backend: str) -> dict[str, float]:
    bad = [k for k, v in scores.items() if not math.isfinite(v)]
    if bad:
        raise ModelUnavailable(f"{backend} model returned no usable score", details={"labels": bad})
    return scores


class NoModel(LanguageModel):
    """``llm_backend = "none"``: every call is unavailable, so verdicts that need a model
    become needs_review."""

    name = "none"

    def ready(self) -> bool:
        return False

    def state(self) -> str:
        return "none"

    def label_logprobs(self, prompt: str, labels: Sequence[str]) -> dict[str, float]:
        raise ModelUnavailable("no language model is configured (GOVERN_LLM_BACKEND=none)")
