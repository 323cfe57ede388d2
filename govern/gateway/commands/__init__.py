"""The command layer: every change of state is one method here, and each makes its change and
writes its typed event in one store transaction (invariant 7). REST, the CLI, the console and
the background workers (job reconciler, rewrite, anchorer) call these methods; a guarded store
refuses writes from anywhere else."""

from __future__ import annotations

from govern.gateway.commands.access import AccessCommands
from govern.gateway.commands.base import Parts
from govern.gateway.commands.compliance import ComplianceCommands
from govern.gateway.commands.datasets import DatasetCommands
from govern.gateway.commands.erasure import ErasureCommands
from govern.gateway.commands.jobs import JOBS_ACTOR, JobCommands
from govern.gateway.commands.ledger import ANCHOR_ACTOR, LedgerCommands
from govern.gateway.commands.runs import RunCommands

__all__ = ["ANCHOR_ACTOR", "JOBS_ACTOR", "Commands", "Parts"]


class Commands(
    AccessCommands,
    DatasetCommands,
    ErasureCommands,
    ComplianceCommands,
    RunCommands,
    JobCommands,
    LedgerCommands,
):
    """Every command, one object (each group is a mixin over the same ``Parts``)."""
