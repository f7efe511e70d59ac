from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse

from audit import export
from audit.models import AuditEvent
from audit.policies import can_export
from audit.selectors import events_for
from common.errors import DomainError
from common.policy import can_use_admin


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only for everyone, superusers included: the trail is only ever appended to."""

    list_display = [
        "seq",
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
    actions = ["export_bundle"]

    @admin.action(description="Export the selected events as a signed bundle for auditors", permissions=["export"])
    def export_bundle(self, request: HttpRequest, queryset: QuerySet) -> StreamingHttpResponse | None:
        """Filter the list (dates, action, search), select the events (or all that match), and
        download a zip that ``python -m audit.offline_verify`` checks."""
        shown = request.GET.urlencode() or "no filter"
        selection = export.select_events(queryset, f"selected in the admin ({shown})")
        try:
            begun = export.export_begin(actor=request.user, selection=selection, reason="exported from the admin")
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return None
        response = StreamingHttpResponse(export.zip_bundle(begun), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{export.bundle_name(begun)}"'
        return response

    def has_export_permission(self, request: HttpRequest) -> bool:
        return bool(can_export(request.user))

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
