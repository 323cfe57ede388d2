"""The event base class and the registry of event kinds.

An event is a small frozen dataclass: its class names the ``kind``, its fields are the entry's
``data``, and ``object_ref`` names the thing it is about (``principal:alice``,
``dataset:patient_notes/v2``). The access log stores each as one leaf
``{"kind", "time", "actor", "object", "data"}``.

What an event may hold is invariant 8: principal ids, dataset names, versions, policy versions,
decisions, counts and hashes. A data subject appears only as a keyed commitment, and free text
(descriptions, notes, backend messages) only as its length.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar

__all__ = ["EVENT_KINDS", "Event", "event_class"]

EVENT_KINDS: dict[str, type[Event]] = {}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Event(ABC):
    kind: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind is None:
            return  # an abstract intermediate class
        if kind in EVENT_KINDS:
            raise TypeError(f"event kind {kind!r} is declared twice")
        EVENT_KINDS[kind] = cls

    @abstractmethod
    def object_ref(self) -> str:
        """``<type>:<id>`` of the object the event is about."""

    def to_data(self) -> dict[str, Any]:
        """The entry's ``data``: every field, as JSON values (tuples become lists)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def event_class(kind: str) -> type[Event]:
    try:
        return EVENT_KINDS[kind]
    except KeyError:
        raise KeyError(f"no event kind {kind!r}") from None
