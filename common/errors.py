"""Domain errors. Services raise these; ``common.api.exception_handler`` turns each into
``{"code", "message", "fields"}`` with its HTTP status, and the admin shows the message."""

from __future__ import annotations

from typing import Self

from django.db import OperationalError


class DomainError(Exception):
    status = 400
    code = "invalid"

    def __init__(self, message: str, *, fields: dict[str, list[str]] | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        if code:
            self.code = code

    @classmethod
    def on(cls, field: str, rule: str) -> Self:
        """The error about one field, naming the rule it broke."""
        return cls(f"{field}: {rule}", fields={field: [rule]})


class ValidationFailed(DomainError):
    """Bad input: the message names the field and the rule."""

    status = 400
    code = "invalid"


class PermissionDenied(DomainError):
    status = 403
    code = "permission_denied"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    """The request is valid but clashes with the current state (duplicate, wrong state)."""

    status = 409
    code = "conflict"


class Duplicate(Conflict):
    """Something with this name or digest already exists (MLflow's RESOURCE_ALREADY_EXISTS)."""


class Unavailable(DomainError):
    """The service cannot do this as configured (a missing key, say): the operator must act."""

    status = 503
    code = "unavailable"


# PostgreSQL gave up on the transaction to let a concurrent one through (a deadlock, or a
# serialisation failure): it rolled back whole, and the same request may simply be sent again.
# The native API answers 409, the MLflow endpoints 429 (which the mlflow client resends), and
# the admin a message on the page (``common.admin.SendAgainMiddleware``).
RETRY_CODES = frozenset({"40P01", "40001"})
TRY_AGAIN = "Another change to the same records was made at the same moment; this one was not saved: send it again."


def to_send_again(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and getattr(exc.__cause__, "pgcode", None) in RETRY_CODES
