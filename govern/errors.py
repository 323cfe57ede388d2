"""One exception tree for all of govern.

Every error knows the HTTP status and the Arrow Flight status it maps to, and a stable
machine-readable ``code`` that clients can switch on. Transports (REST, Flight, CLI) each have
one handler that turns a ``GovernError`` into their own shape; nothing else formats errors.

    GovernError                  HTTP  Flight
    ├── ConfigError              500   internal          settings are unusable
    ├── UnloggedWrite            500   internal          a store write outside the command path
    ├── ValidationError          422   invalid_argument  well-formed but wrong input
    │   ├── PolicyInvalid                                a policy set that cannot load
    │   ├── PolicyCompileError                           a model not compilable exactly
    │   └── PromptTooLong                                prompt beyond the model's context
    ├── BadRequest               400   invalid_argument  malformed input
    │   └── PayloadTooLarge      413                     body over the configured cap
    ├── AuthError                401   unauthenticated   missing/bad/expired/revoked token
    ├── Forbidden                403   unauthorized      the role may not call this
    ├── NotFound                 404   not_found
    │   ├── DatasetNotFound
    │   ├── VersionNotFound
    │   ├── PrincipalNotFound
    │   └── JobNotFound
    ├── Conflict                 409   already_exists
    └── Unavailable              503   unavailable       store, ledger or chain is down
        ├── StoreUnavailable
        ├── ModelUnavailable                             language model down or still loading
        ├── JobBackendUnavailable                        Ray / Kubernetes / local runner down
        └── StorageFull          507                     no room left on GOVERN_HOME's disk

Security-relevant failures never turn into an allow: callers that decide access catch
``GovernError`` and answer deny with the error's reason.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AuthError",
    "BadRequest",
    "ConfigError",
    "Conflict",
    "DatasetNotFound",
    "Forbidden",
    "GovernError",
    "JobBackendUnavailable",
    "JobNotFound",
    "ModelUnavailable",
    "NotFound",
    "PayloadTooLarge",
    "PolicyCompileError",
    "PolicyInvalid",
    "PrincipalNotFound",
    "PromptTooLong",
    "StorageFull",
    "StoreUnavailable",
    "Unavailable",
    "UnloggedWrite",
    "ValidationError",
    "VersionNotFound",
]


class GovernError(Exception):
    """Root of every error govern raises on purpose."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500
    # Names of pyarrow.flight error classes; kept as strings so this module imports nothing heavy.
    flight_status: ClassVar[str] = "internal"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_body(self) -> dict[str, Any]:
        """The one JSON error shape shared by every transport."""
        return {"error": self.code, "message": self.message, "details": self.details}


class ConfigError(GovernError):
    code = "config_error"


class UnloggedWrite(GovernError):
    """A write that reached the store outside the command path: a bug, refused so that no
    change can go unlogged (invariant 7)."""

    code = "unlogged_write"


class ValidationError(GovernError):
    code = "invalid"
    http_status = 422
    flight_status = "invalid_argument"


class PolicyInvalid(ValidationError):
    code = "policy_invalid"


class PolicyCompileError(ValidationError):
    code = "policy_not_compilable"


class PromptTooLong(ValidationError):
    code = "prompt_too_long"


class BadRequest(GovernError):
    code = "bad_request"
    http_status = 400
    flight_status = "invalid_argument"


class PayloadTooLarge(BadRequest):
    code = "payload_too_large"
    http_status = 413


class AuthError(GovernError):
    code = "unauthenticated"
    http_status = 401
    flight_status = "unauthenticated"


class Forbidden(GovernError):
    code = "forbidden"
    http_status = 403
    flight_status = "unauthorized"


class NotFound(GovernError):
    code = "not_found"
    http_status = 404
    flight_status = "not_found"


class DatasetNotFound(NotFound):
    code = "dataset_not_found"


class VersionNotFound(NotFound):
    code = "version_not_found"


class PrincipalNotFound(NotFound):
    code = "principal_not_found"


class JobNotFound(NotFound):
    code = "job_not_found"


class Conflict(GovernError):
    code = "conflict"
    http_status = 409
    flight_status = "already_exists"


class Unavailable(GovernError):
    code = "unavailable"
    http_status = 503
    flight_status = "unavailable"


class StoreUnavailable(Unavailable):
    code = "store_unavailable"


class ModelUnavailable(Unavailable):
    code = "model_unavailable"


class JobBackendUnavailable(Unavailable):
    code = "jobs_backend_unavailable"


class StorageFull(Unavailable):
    """The disk under GOVERN_HOME ran out of room (or quota) while a file was written; what
    was written is removed, so nothing is half-registered."""

    code = "storage_full"
    http_status = 507
