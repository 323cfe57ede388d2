"""Erasure and unlearning: withdraw a data subject's rows at once, find the runs that read them.

``recipes``: how each run was trained; ``strategies``: from a request's affected runs and their
recipes to the retrain / SISA unlearn jobs that ``govern.jobs`` runs (docs/unlearning.md).
"""

from __future__ import annotations

from govern.unlearning.erasure import ErasureInfo, ErasureService

__all__ = ["ErasureInfo", "ErasureService"]
