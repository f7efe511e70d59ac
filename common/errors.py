"""Domain errors. Services raise these; ``common.api.exception_handler`` turns each into
``{"code", "message", "fields"}`` with its HTTP status, and the admin shows the message."""

from __future__ import annotations

from typing import Self


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
