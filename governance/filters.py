"""Query-string filters for the approval requests (django-filter)."""

from __future__ import annotations

import django_filters as filters
from django.db.models import QuerySet

from common.errors import ValidationFailed
from governance import selectors
from governance.models import ApprovalRequest, Deployment, RequestKind, RequestState
from registry.models import RiskTier


class RequestFilter(filters.FilterSet):
    state = filters.ChoiceFilter(choices=RequestState.choices)
    kind = filters.ChoiceFilter(choices=RequestKind.choices)
    tier = filters.TypedChoiceFilter(choices=RiskTier.choices, coerce=int)
    model = filters.CharFilter(field_name="model__name", help_text="model name")
    awaiting = filters.CharFilter(method="filter_awaiting", help_text="'me': the requests awaiting your decision")

    class Meta:
        model = ApprovalRequest
        fields: list[str] = []

    def filter_awaiting(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        if value != "me":
            raise ValidationFailed.on("awaiting", "the only value is 'me'")
        return selectors.awaiting(self.request.user, queryset)


class DeploymentFilter(filters.FilterSet):
    environment = filters.CharFilter(field_name="environment__name")
    model = filters.CharFilter(field_name="version__model__name")
    live = filters.BooleanFilter(field_name="retired_at", lookup_expr="isnull", help_text="true: not retired")

    class Meta:
        model = Deployment
        fields: list[str] = []
