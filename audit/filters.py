import django_filters as filters

from audit.models import AuditEvent


class AuditEventFilter(filters.FilterSet):
    action = filters.CharFilter()
    action_prefix = filters.CharFilter(field_name="action", lookup_expr="startswith", help_text="e.g. model.")
    object_type = filters.CharFilter()
    object_id = filters.CharFilter()
    model_name = filters.CharFilter()
    actor = filters.CharFilter(field_name="actor_name")
    request_id = filters.CharFilter()
    occurred_after = filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields: list[str] = []
