"""What every API view shares: one error shape and cursor pagination."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import cached_property
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, JsonResponse, QueryDict
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import (
    ISO_8601,
    exceptions,
    negotiation,
    pagination,
    parsers,
    relations,
    renderers,
    serializers,
    status,
)
from rest_framework.fields import SkipField, empty
from rest_framework.relations import PKOnlyObject
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.utils import html
from rest_framework.utils import json as drf_json
from rest_framework.utils.serializer_helpers import BindingDict

from common import validation
from common.errors import TRY_AGAIN, DomainError, to_send_again

log = logging.getLogger(__name__)
_CODES = {
    status.HTTP_400_BAD_REQUEST: "invalid",
    status.HTTP_401_UNAUTHORIZED: "not_authenticated",
    status.HTTP_403_FORBIDDEN: "permission_denied",
    status.HTTP_404_NOT_FOUND: "not_found",
    status.HTTP_405_METHOD_NOT_ALLOWED: "method_not_allowed",
    status.HTTP_406_NOT_ACCEPTABLE: "not_acceptable",
    status.HTTP_409_CONFLICT: "conflict",
    status.HTTP_413_REQUEST_ENTITY_TOO_LARGE: "too_large",
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
    # DRF's views module reads the API settings, which name this module's parser: imported here,
    # not above, so that importing this module first (a serializer's test) is not circular.
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, DomainError):
        return Response(error_body(exc.code, exc.message, exc.fields), status=exc.status)
    if to_send_again(exc):
        log.warning("%s %s: %s", context["request"].method, context["request"].path, exc)
        return Response(error_body("conflict", TRY_AGAIN), status=status.HTTP_409_CONFLICT)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, TooManyFieldsSent | TooManyFilesSent):  # a form body past Django's limits
        exc = exceptions.ParseError(str(exc))
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


NOT_A_CURSOR = "not a cursor this API returned"


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
            raise exceptions.ValidationError({self.cursor_query_param: [NOT_A_CURSOR]}) from None

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> Any:
        if not request.query_params.get(self.cursor_query_param):
            return super().paginate_queryset(queryset, request, view)
        try:
            return super().paginate_queryset(queryset, request, view)
        except (DjangoValidationError, ValueError, TypeError, OverflowError) as error:
            # A cursor that decodes but whose position is none of the ordering field's values
            # (a date that is none or past the calendar, letters for a number, a NUL): made by
            # hand, not by the API. Logged, in case it was something else.
            log.info("a cursor refused: %r", error)
            raise exceptions.ValidationError({self.cursor_query_param: [NOT_A_CURSOR]}) from None


class FirstPage:
    """A list's queryset, for ``CursorPagination`` to take the first page of in the list's default
    order, which is most lists asked for, read by ``fetch(limit)`` (a prepared statement) rather
    than built by the ORM: building it was a fifth of a version search's time. The view passes
    it only when the request names no cursor, filter or ordering, so the paginator orders it by
    ``ordering`` and slices it from 0; anything else is asked of the queryset itself."""

    def __init__(self, queryset: Any, ordering: list[str], fetch: Callable[[int], list[Any]]):
        self.queryset, self.ordering, self.fetch = queryset, ordering, fetch

    def order_by(self, *ordering: str) -> Any:
        return self if list(ordering) == self.ordering else self.queryset.order_by(*ordering)

    def __getitem__(self, window: slice) -> Any:
        if window.start or window.stop is None:
            return self.queryset.order_by(*self.ordering)[window]
        return self.fetch(window.stop)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.queryset, name)


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


class ContentNegotiation(negotiation.DefaultContentNegotiation):
    """DRF's, with a shortcut for what client libraries send: a request that takes anything or
    JSON gets the view's first renderer when that is JSON, and a JSON body the first parser when
    that is JSON, as DRF's would, without DRF parsing and matching media types (and building the
    request's header map and query dictionary to do so): a sixth of a bare API request's time.
    Anything else, and a format asked for in the URL, goes DRF's way."""

    def select_renderer(self, request: Any, renderers: Any, format_suffix: Any = None) -> Any:
        first = renderers[0] if renderers else None
        asked = self.settings.URL_FORMAT_OVERRIDE
        if (
            first is not None
            and first.media_type == "application/json"
            and request.META.get("HTTP_ACCEPT", "*/*") in ("*/*", "application/json")
            and not format_suffix
            and (not asked or f"{asked}=" not in request.META.get("QUERY_STRING", ""))
        ):
            return first, first.media_type
        return super().select_renderer(request, renderers, format_suffix)

    def select_parser(self, request: Any, parsers: Any) -> Any:
        if parsers and parsers[0].media_type == "application/json" == request.content_type:
            return parsers[0]
        return super().select_parser(request, parsers)


class BodyTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


def _within_limit(parser_context: Any) -> None:
    """Refuse a body past the view's limit before reading it: ``API_MAX_BODY_BYTES`` for the
    views that take batches (``takes_batches``), Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``
    everywhere else, so that no request to any other endpoint makes a worker hold a batch's
    worth. The parsers below get the request's stream, unread (``_StreamParser``), and DRF
    parses a body only when the request gives its length, reading no more than that: the length
    is the one thing to check."""
    batches = getattr(parser_context.get("view"), "takes_batches", False)
    setting = "API_MAX_BODY_BYTES" if batches else "DATA_UPLOAD_MAX_MEMORY_SIZE"
    limit = getattr(settings, setting)
    length = int(parser_context["request"].META.get("CONTENT_LENGTH") or 0)
    if limit is not None and length > limit:
        raise BodyTooLarge(f"The body is {length} bytes; this endpoint takes at most {limit} ({setting}).")


class _StreamParser(parsers.BaseParser):
    """DRF hands its own JSON and form parsers (and their subclasses) the whole body, read first
    through Django's ``request.body``, which refuses one past ``DATA_UPLOAD_MAX_MEMORY_SIZE``
    with a 400 page of its own; a parser of another class gets the stream, unread. So these are
    not DRF's classes: they check the limit (``_within_limit``), then read."""

    def _read(self, stream: Any, parser_context: Any) -> tuple[bytes, str]:
        _within_limit(parser_context)
        return stream.read(), parsers.get_encoding(parser_context)


class FormParser(_StreamParser):
    media_type = "application/x-www-form-urlencoded"

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        body, encoding = self._read(stream, parser_context)
        return QueryDict(body, encoding=encoding)


class MultiPartParser(parsers.MultiPartParser):
    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        _within_limit(parser_context)
        return super().parse(stream, media_type, parser_context)


class JSONParser(_StreamParser):
    """JSON as DRF's parser reads it, plus: a body past the limit (``_within_limit``), absurdly
    nested documents, and lone UTF-16 surrogates (which the database refuses) are bad input, not
    a server error."""

    media_type = "application/json"
    renderer_class = renderers.JSONRenderer
    strict = api_settings.STRICT_JSON

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        body, encoding = self._read(stream, parser_context)
        try:
            data = json.loads(body.decode(encoding), parse_constant=drf_json.strict_constant if self.strict else None)
        except (ValueError, LookupError) as exc:  # not JSON, not in its encoding, or no such encoding
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply") from None
        field = validation.lone_surrogate(body, data)
        if field is not None:
            raise exceptions.ValidationError({field or "non_field_errors": [validation.NOT_UNICODE]})
        return data


def _fields_once(serializer: Any, build: Any) -> _Fields:
    """The serializer's fields: copies (``_copied``) of its class's, with itself as parent.

    DRF builds a serializer's fields for every serializer it makes, by deep-copying the declared
    ones (each copy runs the field's ``__init__`` again, and a nested serializer's fields are
    built again under it) or by working them out from the model, and binds each to it: 0.3-0.5
    ms for a version's twenty, in every request. Binding sets a field's name, label and source
    from its name, the same for every serializer of the class, and its parent: so the class's
    fields are built and bound once (``_class_fields``), and each serializer gets copies, each
    made when first asked for (``_Fields``)."""
    return _Fields(serializer, _class_fields(serializer, build))


class _Fields(BindingDict):
    """A serializer's fields, as DRF's ``BindingDict`` holds them, each copied from the class's
    the first time it is asked for: a body gives an input serializer a few of its fields
    (``StrictSerializer._writable_fields``), and an answer shows most with the class's own
    (``ModelAnswer``), so most are never copied. A class's fields are fixed."""

    def __init__(self, serializer: Any, built: dict[str, Any]):
        super().__init__(serializer)
        self.built = built

    def __getitem__(self, key: str) -> Any:
        field = self.fields.get(key)
        if field is None:
            field = self.fields[key] = _copied(self.built[key])
            field.parent = self.serializer
        return field

    def __setitem__(self, key: str, field: Any) -> None:
        raise TypeError("a serializer's fields are its class's")

    __delitem__ = __setitem__  # type: ignore[assignment]

    def __contains__(self, key: object) -> bool:
        return key in self.built

    def __iter__(self) -> Any:
        return iter(self.built)

    def __len__(self) -> int:
        return len(self.built)


def _class_fields(serializer: Any, build: Any) -> dict[str, Any]:
    """The fields of the serializer's class, built by ``build`` and bound the first time, with no
    parent."""
    cls = type(serializer)
    built = cls.__dict__.get("_fields_built")
    if built is None:
        built = build()
        for name, field in built.items():
            field.bind(field_name=name, parent=serializer)
            field.parent = None
        cls._fields_built = built
    return built


def _copied(field: Any) -> Any:
    """A copy of a field as ``copy.copy`` makes it (a new object with the same ``__dict__``: DRF's
    fields have no ``__copy__``), without its reduce protocol; their settings are never changed
    after ``__init__``. What is bound to the field is copied too and bound to the copy: the child
    of a list or dict field (or of a ``many=True`` serializer), and a nested serializer's fields,
    which it builds again when first used (through ``_fields_once`` where it is one of ours)."""
    fresh = object.__new__(type(field))
    fresh.__dict__.update(field.__dict__)
    if isinstance(field, serializers.BaseSerializer):
        fresh.__dict__.pop("fields", None)
    child = field.__dict__.get("child")
    if child is not None:
        fresh.child = _copied(child)
        fresh.child.parent = fresh  # all that binding it again would change
    return fresh


class StrictSerializer(serializers.Serializer):
    """An input serializer that refuses fields it does not know, naming them, instead of
    silently ignoring them (a client that sends ``name`` in a PATCH must learn it cannot)."""

    @cached_property
    def fields(self) -> _Fields:  # type: ignore[override]
        return _fields_once(self, self.get_fields)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: [self.unknown_field_message(name)] for name in unknown})
        # While this serializer reads ``data`` (not after: ``_writable_fields`` has other readers).
        self._given = data.keys() if isinstance(data, dict) and not html.is_html_input(data) else None
        try:
            return super().to_internal_value(data)
        finally:
            self._given = None

    @property
    def _writable_fields(self) -> Any:
        """DRF's, less the optional fields without a default that a JSON body leaves out: DRF
        would only find each absent and skip it (its ``SkipField``), at a few microseconds a
        field, and a version takes fourteen fields of which a client sends one or two. A form's
        fields (a ``QueryDict``) are all walked, as DRF reads some from other keys."""
        given, fields = self.__dict__.get("_given"), self.fields
        for name, field in fields.built.items():  # the class's: a copy is made for each one used
            if field.read_only or (
                given is not None and name not in given and not field.required and field.default is empty
            ):
                continue
            yield fields[name]

    def _read_only_defaults(self) -> dict[str, Any]:
        """DRF's, deciding on the class's fields, so that it copies only those with a default."""
        fields, defaults = self.fields, {}
        for name, field in fields.built.items():
            if field.read_only and field.default is not empty and field.source != "*" and "." not in field.source:
                try:
                    defaults[field.source] = fields[name].get_default()
                except SkipField:
                    continue
        return defaults

    def unknown_field_message(self, name: str) -> str:
        return "unknown field, or one that cannot be set here"


# An output ``ModelSerializer`` whose fields are worked out from the model once per class
# (``_fields_once``). (A comment, not a docstring: the schema would show it as the description
# of every answer.)
class ModelAnswer(serializers.ModelSerializer):
    @cached_property
    def fields(self) -> BindingDict:  # type: ignore[override]
        return _fields_once(self, self.get_fields)

    def to_representation(self, instance: Any) -> dict[str, Any]:
        # DRF's, except that it follows the class's plan (``_plan``): a field showing one of the
        # model's own columns (not a relation) reads it with getattr, all that DRF's
        # get_attribute comes to for it, and a timestamp in ISO 8601 is written with the time
        # zone looked up once per object rather than per value (a list of a hundred versions did
        # both two thousand times, 3.2 ms against 1.4); and the class's own fields, shared by
        # every answer, do the showing, so an answer builds no fields of its own unless one needs
        # its parent. Nothing is kept on a serializer between answers.
        if isinstance(instance, Mapping):
            return super().to_representation(instance)
        answer: dict[str, Any] = {}
        zone = None
        for name, field, column, iso in _plan(self):
            if column is not None:
                value = getattr(instance, column)
                if value is None:
                    answer[name] = None
                elif iso and isinstance(value, datetime) and value.tzinfo is not None:
                    zone = zone or timezone.get_current_timezone()
                    text = value.astimezone(zone).isoformat()
                    answer[name] = text[:-6] + "Z" if text.endswith("+00:00") else text
                else:
                    answer[name] = field.to_representation(value)
                continue
            if field is None:
                field = self.fields[name]
            try:
                attribute = field.get_attribute(instance)
            except SkipField:
                continue
            check = attribute.pk if isinstance(attribute, PKOnlyObject) else attribute
            answer[name] = None if check is None else field.to_representation(attribute)
        return answer


def _plan(serializer: Any) -> list[tuple[str, Any, str | None, bool]]:
    """For each field the class shows: (name, the class's field, or None where the field must be
    the answer's own (one that calls its parent, as a method field does), the column it shows or
    None to read it DRF's way, whether the value is a timestamp written in ISO 8601 in the
    current zone). Worked out once per class."""
    cls = type(serializer)
    plan = cls.__dict__.get("_plan_built")
    if plan is not None:
        return plan
    model: Any = serializer.Meta.model
    columns = {f.attname for f in model._meta.concrete_fields if not f.is_relation}
    plan = []
    for name, field in _class_fields(serializer, serializer.get_fields).items():
        if field.write_only:
            continue
        attrs = field.source_attrs
        plain = (
            len(attrs) == 1
            and attrs[0] in columns
            and type(field).get_attribute is serializers.Field.get_attribute
            and not isinstance(field, serializers.BaseSerializer)
        )
        own = isinstance(field, serializers.SerializerMethodField | relations.HyperlinkedRelatedField)
        iso = (
            type(field) is serializers.DateTimeField
            and str(getattr(field, "format", api_settings.DATETIME_FORMAT)).lower() == ISO_8601
            and getattr(field, "timezone", None) is None
            and settings.USE_TZ
        )
        plan.append((name, None if own else field, attrs[0] if plain and not own else None, iso))
    cls._plan_built = plan
    return plan


def api_not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """Unmatched URLs under /api/ answer in the API's error shape, not with an HTML page."""
    return JsonResponse(error_body("not_found", f"No API endpoint at {request.path}."), status=404)
