from django.urls import path
from rest_framework.routers import SimpleRouter

from audit.api.views import AuditEventViewSet, AuditExportView

router = SimpleRouter()
router.register("audit-events", AuditEventViewSet, basename="audit-event")
urlpatterns = [path("audit-exports/", AuditExportView.as_view(), name="audit-export"), *router.urls]
