from typing import Any

from django.contrib import admin
from django.db.models import Exists, OuterRef, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.safestring import mark_safe

from common.admin import ServiceBackedAdmin
from monitoring import services
from monitoring.models import MonitoredVersion, Observation, ThresholdOverride
from registry import selectors as registry_selectors


class ReadOnly(ServiceBackedAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(MonitoredVersion)
class MonitoredVersionAdmin(ReadOnly):
    """Versions with monitoring data; each opens on its charts."""

    list_display = ["__str__", "state"]
    search_fields = ["model__name"]
    list_select_related = ["model"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        visible = registry_selectors.versions_for(request.user)
        monitored = Exists(Observation.objects.filter(version=OuterRef("pk")))
        return MonitoredVersion.objects.filter(monitored, pk__in=visible.values("pk"))

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        version = self.get_object(request, object_id)
        if version is None:
            raise Http404(f"No monitored version {object_id!r} that you may see.")
        context = {
            **self.admin_site.each_context(request),
            "title": f"Monitoring of {version}",
            "version": version,
            "charts": [mark_safe(svg) for svg in services.charts(version)],
            "opts": self.opts,
        }
        return TemplateResponse(request, "admin/monitoring/charts.html", context)


@admin.register(ThresholdOverride)
class ThresholdOverrideAdmin(ReadOnly):
    list_display = ["model", "measure", "warn", "critical", "set_by", "created_at"]
    list_filter = ["measure"]
    search_fields = ["=model__name"]
    list_select_related = ["model", "set_by"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        """The overrides of the models the user may see: a restricted model's name, thresholds
        and reasons stay with those who may see it."""
        visible = registry_selectors.models_for(request.user)
        return super().get_queryset(request).filter(model__in=visible.values("pk"))
