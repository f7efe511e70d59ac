"""What every API view shares: one error shape and cursor pagination."""

from __future__ import annotations

import copy
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, pagination, parsers, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from common.errors import DomainError

_CODES = {
    status.HTTP_400_BAD_REQUEST: "invalid",
    status.HTTP_401_UNAUTHORIZED: "not_authenticated",
    status.HTTP_403_FORBIDDEN: "permission_denied",
    status.HTTP_404_NOT_FOUND: "not_found",
    status.HTTP_405_METHOD_NOT_ALLOWED: "method_not_allowed",
    status.HTTP_406_NOT_ACCEPTABLE: "not_acceptable",
    status.HTTP_409_CONFLICT: "conflict",
    status.HTTP_415_UNSUPPORTED_MEDIA_TYPE: "unsupported_media_type",
    status.HTTP_429_TOO_MANY_REQUESTS: "throttled",
}


def error_body(code: str, message: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "fields": fields or {}}


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail → {"field.sub": ["rule", …]}."""
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            if isinstance(key, int):  # DRF reports list items by index: parents[0].version_id
                name = f"{prefix}[{key}]"
            else:
                name = f"{prefix}.{key}" if prefix else str(key)
            out.update(_flatten(value, name))
        return out
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return {prefix or "non_field_errors": [str(item) for item in detail]}
        out = {}
        for index, item in enumerate(detail):
            out.update(_flatten(item, f"{prefix}[{index}]"))
        return out
    return {prefix or "non_field_errors": [str(detail)]}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        return Response(error_body(exc.code, exc.message, exc.fields), status=exc.status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = _CODES.get(response.status_code, "error")
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        message = "; ".join(f"{name}: {' '.join(rules)}" for name, rules in fields.items())
        response.data = error_body(code, message, fields)
    else:
        detail = getattr(exc, "detail", str(exc))
        response.data = error_body(code, str(detail))
    return response


class CursorPagination(pagination.CursorPagination):
    """Stable pages at any table size: no COUNT(*), no OFFSET scans."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    ordering = "-created_at"

    def decode_cursor(self, request: Any) -> Any:
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound:
            raise exceptions.ValidationError({self.cursor_query_param: ["not a cursor this API returned"]}) from None


class JSONParser(parsers.JSONParser):
    """DRF's parser, plus: absurdly nested documents are bad input, not a server error."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply") from None


class StrictSerializer(serializers.Serializer):
    """An input serializer that refuses fields it does not know, naming them, instead of
    silently ignoring them (a client that sends ``name`` in a PATCH must learn it cannot)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: [self.unknown_field_message(name)] for name in unknown})
        return super().to_internal_value(data)

    def unknown_field_message(self, name: str) -> str:
        return "unknown field, or one that cannot be set here"


# An output ``ModelSerializer`` whose fields are worked out from the model once per class. DRF
# works them out again for every serializer it makes (0.36 ms for a version's twenty, on every
# response); a copy of the first is about half that. Fields are bound to the serializer using
# them, so each gets its own copy. (A comment, not a docstring: the schema would show it as the
# description of every answer.)
class ModelAnswer(serializers.ModelSerializer):
    def get_fields(self) -> dict[str, Any]:
        cls = type(self)
        if "_fields_from_model" not in cls.__dict__:
            cls._fields_from_model = super().get_fields()  # type: ignore[attr-defined]
        return copy.deepcopy(cls._fields_from_model)  # type: ignore[attr-defined]


def api_not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """Unmatched URLs under /api/ answer in the API's error shape, not with an HTML page."""
    return JsonResponse(error_body("not_found", f"No API endpoint at {request.path}."), status=404)
