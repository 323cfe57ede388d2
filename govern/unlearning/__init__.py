"""Erasure and unlearning: withdraw a data subject's rows at once, find the runs that read them.

Retraining and unlearning jobs (local, Ray, Kubernetes) are not built yet; requests record the
affected runs those jobs will start from.
"""

from __future__ import annotations

from govern.unlearning.erasure import ErasureInfo, ErasureService

__all__ = ["ErasureInfo", "ErasureService"]
