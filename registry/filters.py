"""Query-string filters for the registry's lists (django-filter)."""

from __future__ import annotations

import json
from typing import Any

import django_filters as filters
from django.db.models import F, Func, Q, QuerySet, TextField

from common.errors import ValidationFailed
from common.validation import tag_key
from registry.models import (
    ApiToken,
    Dataset,
    DatasetUsage,
    DatasetVersion,
    ModelStatus,
    ModelVersion,
    RegisteredModel,
    RiskTier,
    VersionState,
)


class TagValue(Func):
    """The value of the tag ``key`` in the JSON column ``column``, as text; NULL on a row without
    the tag (tag values are strings, never JSON null). Django's key lookups would read a key
    made of digits, such as ``"2024"``, as an array index, which no tag matches; here a key is
    always a key."""

    output_field = TextField()

    def __init__(self, column: str, key: str):
        super().__init__(F(column))
        self.key = key

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, tuple[Any, ...]]:  # type: ignore[override]
        column, params = compiler.compile(self.get_source_expressions()[0])
        if connection.vendor == "postgresql":
            return f"({column} ->> %s::text)", (*params, self.key)
        # SQLite: a JSON path names a key in double quotes (tag keys hold none).
        return f"json_extract({column}, %s)", (*params, f"$.{json.dumps(self.key)}")


def filter_by_tag(queryset: QuerySet, name: str, value: str) -> QuerySet:
    """``tag=key`` (has the tag) or ``tag=key=value`` (has it with that value)."""
    key, sep, tag_value = value.partition("=")
    tag_key("tag", key)
    queryset = queryset.alias(_tag_value=TagValue("tags", key))
    return queryset.filter(_tag_value=tag_value) if sep else queryset.filter(_tag_value__isnull=False)


class ModelFilter(filters.FilterSet):
    name = filters.CharFilter(help_text="exact name")
    search = filters.CharFilter(method="filter_search", help_text="part of the name or display name")
    owner = filters.CharFilter(field_name="owner__username")
    team = filters.CharFilter(field_name="team__name")
    tier = filters.TypedChoiceFilter(field_name="risk_tier", choices=RiskTier.choices, coerce=int)
    status = filters.ChoiceFilter(choices=ModelStatus.choices)
    restricted = filters.BooleanFilter()
    tag = filters.CharFilter(method=filter_by_tag, help_text="key, or key=value")
    created_after = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    uses_dataset = filters.CharFilter(method="filter_uses_dataset", help_text="dataset name (any of its versions)")
    uses_dataset_version = filters.NumberFilter(method="filter_uses_dataset_version", help_text="dataset version id")

    class Meta:
        model = RegisteredModel
        fields: list[str] = []

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(name__icontains=value) | Q(display_name__icontains=value))

    def filter_uses_dataset(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        used = DatasetUsage.objects.filter(dataset_version__dataset__name=value).values("version__model_id")
        return queryset.filter(pk__in=used)

    def filter_uses_dataset_version(self, queryset: QuerySet, name: str, value: Any) -> QuerySet:
        used = DatasetUsage.objects.filter(dataset_version_id=_id(name, value)).values("version__model_id")
        return queryset.filter(pk__in=used)


class VersionFilter(filters.FilterSet):
    model = filters.CharFilter(field_name="model__name")
    number = filters.NumberFilter(min_value=1, max_value=2**31 - 1)
    state = filters.ChoiceFilter(choices=VersionState.choices)
    created_by = filters.CharFilter(field_name="created_by__username")
    framework = filters.CharFilter()
    artifact_sha256 = filters.CharFilter(method="filter_digest", help_text="the artifact's SHA-256")
    tag = filters.CharFilter(method=filter_by_tag, help_text="key, or key=value")
    created_after = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    uses_dataset = filters.CharFilter(method="filter_uses_dataset", help_text="dataset name (any of its versions)")
    uses_dataset_version = filters.NumberFilter(method="filter_uses_dataset_version", help_text="dataset version id")

    class Meta:
        model = ModelVersion
        fields: list[str] = []

    def filter_digest(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(artifact_sha256=value.strip().lower())

    def filter_uses_dataset(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        used = DatasetUsage.objects.filter(dataset_version__dataset__name=value).values("version_id")
        return queryset.filter(pk__in=used)

    def filter_uses_dataset_version(self, queryset: QuerySet, name: str, value: Any) -> QuerySet:
        used = DatasetUsage.objects.filter(dataset_version_id=_id(name, value)).values("version_id")
        return queryset.filter(pk__in=used)


class DatasetFilter(filters.FilterSet):
    name = filters.CharFilter()
    search = filters.CharFilter(field_name="name", lookup_expr="icontains")
    team = filters.CharFilter(field_name="team__name")
    created_after = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Dataset
        fields: list[str] = []


class DatasetVersionFilter(filters.FilterSet):
    digest = filters.CharFilter(method="filter_digest")

    class Meta:
        model = DatasetVersion
        fields: list[str] = []

    def filter_digest(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(digest=value.strip().lower())


def _id(name: str, value: Any) -> int:
    if value != int(value) or not 1 <= value < 2**63:
        raise ValidationFailed.on(name, "must be a positive whole number")
    return int(value)


class TokenFilter(filters.FilterSet):
    user = filters.CharFilter(field_name="user__username", help_text="whose tokens (username)")
    revoked = filters.BooleanFilter(method="filter_revoked", help_text="revoked (true) or not (false)")

    class Meta:
        model = ApiToken
        fields: list[str] = []

    def filter_revoked(self, queryset: QuerySet, name: str, value: bool) -> QuerySet:
        return queryset.filter(revoked_at__isnull=not value)
