from django.db.models import QuerySet
from rest_framework import mixins, viewsets

from audit.api.serializers import AuditEventOut
from audit.filters import AuditEventFilter
from audit.selectors import events_for
from common.api import CursorPagination


class AuditEventPagination(CursorPagination):
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000
    ordering = "-seq"


class AuditEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The audit trail, read-only: oversight roles see all of it, others their own actions.
    A model's history is at /api/v1/models/{name}/history/."""

    serializer_class = AuditEventOut
    filterset_class = AuditEventFilter
    pagination_class = AuditEventPagination
    ordering_fields = ["seq"]
    ordering = ["-seq"]
    lookup_field = "seq"
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self) -> QuerySet:
        return events_for(self.request.user)
