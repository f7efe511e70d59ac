from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.request import Request
from rest_framework.views import APIView

from audit import export
from audit.api.serializers import AuditEventOut, ExportIn
from audit.filters import AuditEventFilter
from audit.policies import can_export
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


class AuditExportView(APIView):
    """Export the trail for auditors: a signed zip bundle (events.jsonl, events.csv,
    proofs.jsonl, checkpoints.jsonl, manifest.json, manifest.sig) to verify offline with
    ``python -m audit.offline_verify BUNDLE --pubkey KEY``. Auditors and administrators only;
    the export is recorded in the trail before it is sent."""

    @extend_schema(
        request=ExportIn,
        responses={
            (200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY, description="the bundle"),
        },
    )
    def post(self, request: Request) -> StreamingHttpResponse:
        can_export(request.user).ensure()
        data = ExportIn(data=request.data)
        data.is_valid(raise_exception=True)
        options = dict(data.validated_data)
        reason = options.pop("reason")
        begun = export.export_begin(actor=request.user, selection=export.select(**options), reason=reason)
        response = StreamingHttpResponse(export.zip_bundle(begun), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{export.bundle_name(begun)}"'
        return response
