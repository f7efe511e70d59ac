from typing import Any

import django_filters as filters

from audit import selectors
from audit.models import AuditEvent


class AuditEventFilter(filters.FilterSet):
    action = filters.CharFilter()
    action_prefix = filters.CharFilter(field_name="action", lookup_expr="startswith", help_text="e.g. model.")
    object_type = filters.CharFilter()
    object_id = filters.CharFilter()
    model_name = filters.CharFilter(help_text="the model's name as the event recorded it")
    model = filters.CharFilter(
        method="by_model", help_text="a model as it is called now: its events under every name it has had"
    )
    actor = filters.CharFilter(
        method="by_actor",
        help_text="a username (system: Warden's own events): that user's events, under any name they had",
    )
    request_id = filters.CharFilter()
    occurred_after = filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields: list[str] = []

    def by_actor(self, queryset: Any, name: str, value: str) -> Any:
        return queryset.filter(selectors.actor_scope(value))

    def by_model(self, queryset: Any, name: str, value: str) -> Any:
        return queryset.filter(selectors.model_scope(value))
