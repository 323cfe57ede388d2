"""The access log: checkpoints, entries, proofs, the verifier key.

Least privilege (invariant 9): checkpoints, the key, proofs and a principal's own entries are
open to every principal; other principals' entries and the whole bundle are for auditors,
compliance officers and admins (403 otherwise)."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel

from govern.api.deps import GatewayDep, require
from govern.auth import Action, Caller
from govern.errors import NotFound, ValidationError
from govern.gateway.queries import LedgerEntryView

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])

Reader = Annotated[Caller, Depends(require(Action.LEDGER_READ))]
NonNegative = Annotated[int, Query(ge=0, le=2**53)]
Index = Annotated[int, Path(ge=0, le=2**53)]


class CheckpointOut(BaseModel):
    tree_size: int
    root_hash: str
    timestamp: str
    signature: str
    note: str
    anchors: list[dict[str, Any]]


class EntryOut(BaseModel):
    index: int
    entry: dict[str, Any]
    leaf: str


class ProofOut(BaseModel):
    index: int
    tree_size: int
    hashes: list[str]


class ConsistencyOut(BaseModel):
    first: int
    second: int
    hashes: list[str]


class EntriesPage(BaseModel):
    entries: list[EntryOut]
    next: int | None


@router.get("/checkpoint", response_model=CheckpointOut)
def checkpoint(gateway: GatewayDep, _: Reader) -> CheckpointOut:
    head, anchors = gateway.queries.checkpoint()
    # Anchors of trees containing this one; empty until the anchorer has caught up with it.
    return CheckpointOut(**head.to_json([a.to_json() for a in anchors]))


@router.get("/key")
def key(gateway: GatewayDep, _: Reader) -> dict[str, str]:
    return gateway.queries.verifier_key()


@router.get("/bundle")
def bundle(gateway: GatewayDep, caller: Reader) -> dict[str, Any]:
    """Everything `govern ledger verify --url` needs: entries, recorded leaf hashes, signed
    checkpoints and anchors (every principal's entries: auditor, compliance and admin only).
    The hashes are trusted only as far as the signatures cover them."""
    return gateway.queries.bundle(caller).to_json()


def _entry_out(view: LedgerEntryView) -> EntryOut:
    return EntryOut(index=view.index, entry=view.entry, leaf=base64.b64encode(view.leaf).decode())


@router.get("/entries", response_model=EntriesPage)
def entries(
    gateway: GatewayDep,
    caller: Reader,
    start: NonNegative = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    object: Annotated[str | None, Query(max_length=300)] = None,
) -> EntriesPage:
    """Entries from ``start`` on, oldest first, filtered by actor, kind and object. Auditors,
    compliance officers and admins see every entry; everyone else their own."""
    rows = gateway.queries.ledger_entries(
        caller, start=start, limit=limit, actor=actor, kind=kind, object_ref=object
    )
    page = [_entry_out(v) for v in rows]
    return EntriesPage(entries=page, next=rows[-1].index + 1 if len(rows) == limit else None)


@router.get("/entries/{index}", response_model=EntryOut)
def entry(index: Index, gateway: GatewayDep, caller: Reader) -> EntryOut:
    """One entry: the caller's own, or any for auditors, compliance officers and admins."""
    if index < 0:
        raise ValidationError("index must be >= 0", details={"index": index})
    return _entry_out(gateway.queries.ledger_entry(caller, index))


@router.get("/entries/{index}/proof", response_model=ProofOut)
def proof(index: Index, gateway: GatewayDep, _: Reader, tree_size: NonNegative) -> ProofOut:
    """An inclusion proof (hashes only, so open to every principal)."""
    if index < 0:
        raise ValidationError("index must be >= 0", details={"index": index})
    if tree_size > gateway.queries.log_size():
        raise NotFound("tree_size is beyond the head", details={"tree_size": tree_size})
    hashes = gateway.queries.inclusion_proof(index, tree_size)
    return ProofOut(index=index, tree_size=tree_size, hashes=[h.hex() for h in hashes])


@router.get("/consistency", response_model=ConsistencyOut)
def consistency(
    gateway: GatewayDep, _: Reader, first: NonNegative, second: NonNegative
) -> ConsistencyOut:
    if first > second:
        raise ValidationError("first must not exceed second", details={"first": first})
    if second > gateway.queries.log_size():
        raise NotFound("second is beyond the head", details={"second": second})
    hashes = gateway.queries.consistency_proof(first, second)
    return ConsistencyOut(first=first, second=second, hashes=[h.hex() for h in hashes])
