"""Provenance: which rows of which dataset version went to which training run.

Row ids delivered by a read are recorded as roaring bitmaps per (run, dataset version) in the
store's ``run_reads`` table; ``SubjectLookup`` answers "which runs read any row of subject X".
"""

from __future__ import annotations

from govern.provenance.store import (
    ProvenanceStore,
    RunInfo,
    RunReadInfo,
    ensure_run_visible,
    validate_run_id,
)
from govern.provenance.subjects import SubjectLookup, SubjectRead, SubjectRun

__all__ = [
    "ProvenanceStore",
    "RunInfo",
    "RunReadInfo",
    "SubjectLookup",
    "SubjectRead",
    "SubjectRun",
    "ensure_run_visible",
    "validate_run_id",
]
