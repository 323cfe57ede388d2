"""What a Flight client asks for: the read command (in a ``FlightDescriptor``) and the ticket.

Both are UTF-8 JSON objects, version 1::

    {"v": 1, "dataset": "patient_notes", "version": 3, "purpose": "training",
     "run_id": "run-42", "columns": ["note", "age"], "shard": [0, 4]}

``version``, ``run_id``, ``columns`` and ``shard`` may be left out (or null). A descriptor's
command may also hold ``"shards": N``: GetFlightInfo then answers with N endpoints whose
tickets split the version into N disjoint shards. A ticket carries no authority of its own: the
bearer token of the DoGet call is checked and the Plan decided again, so a ticket copied to
another caller reads only what that caller may read.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from govern.errors import BadRequest
from govern.gateway.reads import MAX_COLUMNS, MAX_SHARDS, ReadRequest
from govern.unlearning.recipes import RecipeBody

__all__ = ["MAX_TICKET_BYTES", "ReadCommand", "ReadTicket", "RecipeAction"]

MAX_TICKET_BYTES = 64 * 1024

_T = TypeVar("_T", bound=BaseModel)
_Column = Annotated[str, Field(min_length=1, max_length=63)]


class ReadTicket(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    dataset: str = Field(min_length=1, max_length=63)
    purpose: str = Field(min_length=1, max_length=100)
    version: int | None = Field(None, ge=1)
    run_id: str | None = Field(None, min_length=1, max_length=200)
    columns: list[_Column] | None = Field(None, max_length=MAX_COLUMNS)
    shard: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=1, le=MAX_SHARDS)]] | None = (
        None
    )

    @classmethod
    def decode(cls, data: bytes) -> ReadTicket:
        return _decode(cls, data)

    def encode(self) -> bytes:
        return json.dumps(
            self.model_dump(exclude_none=True, exclude={"shards"}),
            separators=(",", ":"),
            sort_keys=True,
        ).encode()

    def request(self) -> ReadRequest:
        return ReadRequest(
            dataset=self.dataset,
            purpose=self.purpose,
            run_id=self.run_id,
            columns=self.columns,
            version=self.version,
            shard=self.shard,
        )


class ReadCommand(ReadTicket):
    """A descriptor's command: a ticket's fields, plus how many shards to split into."""

    shards: int = Field(1, ge=1, le=1024)

    @classmethod
    def decode(cls, data: bytes) -> ReadCommand:
        return _decode(cls, data)

    def tickets(self, version: int) -> list[ReadTicket]:
        """One ticket per shard, pinned to ``version`` so every shard reads the same rows."""
        base = self.model_dump(exclude={"shards", "version", "shard"})
        if self.shards == 1:
            return [ReadTicket(**base, version=version, shard=self.shard)]
        if self.shard is not None:
            raise BadRequest("give either shard or shards, not both")
        return [
            ReadTicket(**base, version=version, shard=(i, self.shards)) for i in range(self.shards)
        ]


class RecipeAction(BaseModel):
    """The body of the ``recipe.put`` and ``recipe.get`` actions (UTF-8 JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(min_length=1, max_length=200)
    recipe: RecipeBody | None = None

    @classmethod
    def decode(cls, data: bytes) -> RecipeAction:
        return _decode(cls, data, "the action body is not a recipe request (docs/unlearning.md)")


def _decode(
    cls: type[_T],
    data: bytes,
    what: str = "the ticket is not a govern read request (see docs/flight.md)",
) -> _T:
    if len(data) > MAX_TICKET_BYTES:
        raise BadRequest(f"tickets are at most {MAX_TICKET_BYTES} bytes")
    try:
        return cls.model_validate_json(data)
    except PydanticValidationError as exc:
        raise BadRequest(
            what,
            details=[
                {"loc": [str(p) for p in e["loc"]], "message": e["msg"]} for e in exc.errors()
            ][:20],
        ) from None
