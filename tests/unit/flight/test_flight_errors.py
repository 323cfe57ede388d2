from __future__ import annotations

import inspect
import json

import pyarrow.flight as flight
import pytest

import govern.errors as errors
from govern.errors import AuthError, DatasetNotFound, Forbidden, GovernError, Unavailable
from govern.flight.errors import FLIGHT_ERRORS, flight_errors, to_flight_error

ALL = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, GovernError)]


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_error_leaves_as_its_flight_status_with_the_json_body(
    cls: type[GovernError],
) -> None:
    exc = cls("something went wrong", details={"k": "v"})
    out = to_flight_error(exc)
    assert type(out) is FLIGHT_ERRORS[cls.flight_status]
    body = {"error": cls.code, "message": "something went wrong", "details": {"k": "v"}}
    assert json.loads(str(out)) == body
    assert json.loads(out.extra_info) == body


def test_the_statuses_that_matter_to_trainers() -> None:
    assert isinstance(to_flight_error(AuthError("x")), flight.FlightUnauthenticatedError)
    assert isinstance(to_flight_error(Forbidden("x")), flight.FlightUnauthorizedError)
    assert isinstance(to_flight_error(Unavailable("x")), flight.FlightUnavailableError)
    not_found = to_flight_error(DatasetNotFound("no dataset 'x'"))
    assert isinstance(not_found, flight.FlightServerError)
    assert json.loads(str(not_found))["error"] == "dataset_not_found"


def test_unexpected_errors_leak_nothing() -> None:
    with pytest.raises(flight.FlightInternalError) as info, flight_errors():
        raise RuntimeError("SELECT secret FROM /srv/private/path")
    assert "secret" not in str(info.value) and "/srv" not in str(info.value)
    assert json.loads(str(info.value)) == {
        "error": "internal",
        "message": "internal error",
        "details": None,
    }


def test_flight_errors_pass_through_unchanged() -> None:
    original = flight.FlightCancelledError("stop")
    with pytest.raises(flight.FlightCancelledError) as info, flight_errors():
        raise original
    assert info.value is original
