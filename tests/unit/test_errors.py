from __future__ import annotations

import inspect

import pyarrow.flight as flight

import govern.errors as errors
from govern.errors import DatasetNotFound, GovernError

ALL_ERRORS = [
    obj for _, obj in inspect.getmembers(errors, inspect.isclass) if issubclass(obj, GovernError)
]


def test_error_body_has_the_one_shape() -> None:
    exc = DatasetNotFound("no dataset 'x'", details={"dataset": "x"})
    assert exc.to_body() == {
        "error": "dataset_not_found",
        "message": "no dataset 'x'",
        "details": {"dataset": "x"},
    }


def test_every_error_knows_an_http_and_a_flight_status() -> None:
    flight_names = {
        "internal": flight.FlightInternalError,
        "invalid_argument": flight.FlightServerError,
        "unauthenticated": flight.FlightUnauthenticatedError,
        "unauthorized": flight.FlightUnauthorizedError,
        "not_found": flight.FlightServerError,
        "already_exists": flight.FlightServerError,
        "unavailable": flight.FlightUnavailableError,
    }
    for cls in ALL_ERRORS:
        assert 400 <= cls.http_status < 600, cls
        assert cls.flight_status in flight_names, cls
        assert cls.code and cls.code == cls.code.lower(), cls


def test_every_error_is_drawn_in_the_module_docstring() -> None:
    doc = errors.__doc__ or ""
    for cls in ALL_ERRORS:
        assert cls.__name__ in doc, f"{cls.__name__} missing from the error tree docstring"


def test_public_exports_are_pinned() -> None:
    assert sorted(errors.__all__) == sorted(cls.__name__ for cls in ALL_ERRORS)
