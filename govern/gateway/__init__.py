"""The gateway layer: the Gateway that wires the parts, and the four things it gives the edges
(decider, reads, commands, queries). Edges import from here; parts never do."""

from __future__ import annotations

from govern.gateway.decider import Decider, DecisionRequest
from govern.gateway.reads import GovernedRead, ReadDescription, ReadRequest, Reads
from govern.gateway.wiring import Gateway

__all__ = [
    "Decider",
    "DecisionRequest",
    "Gateway",
    "GovernedRead",
    "ReadDescription",
    "ReadRequest",
    "Reads",
]
