"""Datasets in the catalog."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from govern.api.deps import GatewayDep, require
from govern.auth import Action, Caller
from govern.catalog import DatasetInfo

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


class ColumnOut(BaseModel):
    name: str
    type: str
    tags: list[str]


class DatasetOut(BaseModel):
    name: str
    version: int
    columns: list[ColumnOut]
    subject_column: str
    row_count: int
    description: str

    @classmethod
    def of(cls, info: DatasetInfo) -> DatasetOut:
        return cls(
            name=info.name,
            version=info.version,
            columns=[ColumnOut(name=c.name, type=c.type, tags=list(c.tags)) for c in info.columns],
            subject_column=info.subject_column,
            row_count=info.row_count,
            description=info.description,
        )


Reader = Annotated[Caller, Depends(require(Action.DATASETS_READ))]


@router.get("", response_model=list[DatasetOut])
def list_datasets(gateway: GatewayDep, _: Reader) -> list[DatasetOut]:
    return [DatasetOut.of(d) for d in gateway.catalog.all()]


@router.get("/{name}", response_model=DatasetOut)
def get_dataset(name: str, gateway: GatewayDep, _: Reader) -> DatasetOut:
    return DatasetOut.of(gateway.catalog.get(name))


@router.get("/{name}/versions", response_model=list[DatasetOut])
def list_versions(name: str, gateway: GatewayDep, _: Reader) -> list[DatasetOut]:
    return [DatasetOut.of(d) for d in gateway.catalog.versions(name)]
