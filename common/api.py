"""What every API view shares: one error shape and cursor pagination."""

from __future__ import annotations

import copy
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from django_filters.rest_framework import DjangoFilterBackend
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


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend, which builds a filter set and a form on every request (a fifth of
    a version list's time). When no query parameter names a filter, each filter would pass the
    list through as it is (an absent value filters nothing), so it is passed through unbuilt.
    Every filter here takes one parameter of its own name."""

    def filter_queryset(self, request: Any, queryset: Any, view: Any) -> Any:
        filterset = self.get_filterset_class(view, queryset)
        if filterset is not None and not filterset.base_filters.keys() & request.query_params.keys():
            return queryset
        return super().filter_queryset(request, queryset, view)


class JSONParser(parsers.JSONParser):
    """DRF's parser, plus: absurdly nested documents are bad input, not a server error."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply") from None


def _fields_once(serializer: Any, build: Any) -> dict[str, Any]:
    """The serializer's fields, built once per class by ``build`` and copied for each serializer.

    DRF builds a serializer's fields for every serializer it makes, by deep-copying the declared
    ones (each copy runs the field's ``__init__`` again) or by working them out from the model:
    0.3-0.5 ms for a version's twenty, in every request. A field is bound to the serializer that
    uses it (``bind`` sets its name, parent and source), so each serializer gets copies: a
    shallow copy of a plain field, whose settings are never changed after ``__init__``, and a
    deep one of a nested serializer, whose own fields are bound to it."""
    cls = type(serializer)
    if "_fields_built" not in cls.__dict__:
        cls._fields_built = build()
    return {
        name: copy.deepcopy(field) if isinstance(field, serializers.BaseSerializer) else copy.copy(field)
        for name, field in cls._fields_built.items()
    }


class StrictSerializer(serializers.Serializer):
    """An input serializer that refuses fields it does not know, naming them, instead of
    silently ignoring them (a client that sends ``name`` in a PATCH must learn it cannot)."""

    def get_fields(self) -> dict[str, Any]:
        return _fields_once(self, super().get_fields)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: [self.unknown_field_message(name)] for name in unknown})
        return super().to_internal_value(data)

    def unknown_field_message(self, name: str) -> str:
        return "unknown field, or one that cannot be set here"


# An output ``ModelSerializer`` whose fields are worked out from the model once per class
# (``_fields_once``). (A comment, not a docstring: the schema would show it as the description
# of every answer.)
class ModelAnswer(serializers.ModelSerializer):
    def get_fields(self) -> dict[str, Any]:
        return _fields_once(self, super().get_fields)


def api_not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """Unmatched URLs under /api/ answer in the API's error shape, not with an HTML page."""
    return JsonResponse(error_body("not_found", f"No API endpoint at {request.path}."), status=404)
