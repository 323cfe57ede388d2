"""Provenance: which rows of which dataset version went to which training run.

Row ids delivered by a read are recorded as roaring bitmaps per (run, dataset version) in the
store's ``run_reads`` table; ``SubjectLookup`` answers "which runs read any row of subject X".
"""

from __future__ import annotations

from govern.provenance.reads import (
    RUN_REQUIRED_PURPOSES,
    GovernedRead,
    ReadDescription,
    ReadRequest,
    describe_read,
    open_read,
)
from govern.provenance.store import (
    ProvenanceStore,
    RunInfo,
    RunReadInfo,
    ensure_run_visible,
    validate_run_id,
)
from govern.provenance.subjects import SubjectLookup, SubjectRead, SubjectRun

__all__ = [
    "RUN_REQUIRED_PURPOSES",
    "GovernedRead",
    "ProvenanceStore",
    "ReadDescription",
    "ReadRequest",
    "RunInfo",
    "RunReadInfo",
    "SubjectLookup",
    "SubjectRead",
    "SubjectRun",
    "describe_read",
    "ensure_run_visible",
    "open_read",
    "validate_run_id",
]
