from rest_framework import serializers

from audit.models import EVENT_FIELDS, AuditEvent
from common.api import ModelAnswer, StrictSerializer


class AuditEventOut(ModelAnswer):
    class Meta:
        model = AuditEvent
        fields = list(EVENT_FIELDS)
        read_only_fields = fields


class ExportIn(StrictSerializer):
    occurred_after = serializers.DateTimeField(required=False, help_text="events at or after this time")
    occurred_before = serializers.DateTimeField(required=False, help_text="events before this time")
    model = serializers.CharField(required=False, default="", allow_blank=True, max_length=100)
    actor = serializers.CharField(required=False, default="", allow_blank=True, max_length=150, help_text="username")
    action = serializers.CharField(required=False, default="", allow_blank=True, max_length=64)
    reason = serializers.CharField(required=False, default="", allow_blank=True, max_length=2000)
