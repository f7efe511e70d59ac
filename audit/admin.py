from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditEvent
from audit.selectors import events_for
from common.policy import can_use_admin


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only for everyone, superusers included: the trail is only ever appended to."""

    list_display = [
        "id",
        "occurred_at",
        "actor_name",
        "action",
        "object_type",
        "object_id",
        "model_name",
    ]
    list_filter = ["action", "object_type"]
    search_fields = ["=model_name", "=actor_name", "=object_id", "=request_id", "action"]
    date_hierarchy = "occurred_at"
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> Any:
        return events_for(request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(can_use_admin(request.user))

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(can_use_admin(request.user))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
