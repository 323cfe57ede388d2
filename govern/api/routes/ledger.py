"""The access log, for auditors: checkpoints, entries, proofs, the verifier key."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from govern.api.deps import GatewayDep, require
from govern.auth import Action, Caller
from govern.errors import NotFound, ValidationError

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])

Reader = Annotated[Caller, Depends(require(Action.LEDGER_READ))]
NonNegative = Annotated[int, Query(ge=0, le=2**53)]


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
    head = gateway.ledger.checkpoint()
    # Anchors of trees containing this one; empty until the anchorer has caught up with it.
    anchors = [a.to_json() for a in gateway.anchors.covering(head.tree_size)]
    return CheckpointOut(**head.to_json(anchors))


@router.get("/key")
def key(gateway: GatewayDep, _: Reader) -> dict[str, str]:
    return gateway.ledger.public_key()


@router.get("/bundle")
def bundle(gateway: GatewayDep, _: Reader) -> dict[str, Any]:
    """Everything `govern ledger verify --url` needs: entries, recorded leaf hashes, signed
    checkpoints and anchors. The hashes are trusted only as far as the signatures cover them."""
    gateway.ledger.checkpoint()
    data = gateway.ledger.bundle()
    data.anchors = [a.ref() for a in gateway.anchors.all()]
    return data.to_json()


@router.get("/entries", response_model=EntriesPage)
def entries(
    gateway: GatewayDep,
    _: Reader,
    start: NonNegative = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EntriesPage:
    from govern.ledger.canonical import parse_leaf

    rows = gateway.ledger.leaves(start, limit)
    page = [
        EntryOut(index=i, entry=parse_leaf(leaf), leaf=base64.b64encode(leaf).decode())
        for i, leaf in rows
    ]
    return EntriesPage(entries=page, next=rows[-1][0] + 1 if len(rows) == limit else None)


@router.get("/entries/{index}", response_model=EntryOut)
def entry(index: int, gateway: GatewayDep, _: Reader) -> EntryOut:
    if index < 0:
        raise ValidationError("index must be >= 0", details={"index": index})
    data, leaf = gateway.ledger.entry(index)
    return EntryOut(index=index, entry=data, leaf=base64.b64encode(leaf).decode())


@router.get("/entries/{index}/proof", response_model=ProofOut)
def proof(index: int, gateway: GatewayDep, _: Reader, tree_size: NonNegative) -> ProofOut:
    if index < 0:
        raise ValidationError("index must be >= 0", details={"index": index})
    if tree_size > gateway.ledger.refresh():
        raise NotFound("tree_size is beyond the head", details={"tree_size": tree_size})
    hashes = gateway.ledger.inclusion_proof(index, tree_size)
    return ProofOut(index=index, tree_size=tree_size, hashes=[h.hex() for h in hashes])


@router.get("/consistency", response_model=ConsistencyOut)
def consistency(
    gateway: GatewayDep, _: Reader, first: NonNegative, second: NonNegative
) -> ConsistencyOut:
    if first > second:
        raise ValidationError("first must not exceed second", details={"first": first})
    if second > gateway.ledger.refresh():
        raise NotFound("second is beyond the head", details={"second": second})
    hashes = gateway.ledger.consistency_proof(first, second)
    return ConsistencyOut(first=first, second=second, hashes=[h.hex() for h in hashes])
