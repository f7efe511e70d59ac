from rest_framework import serializers

from audit.models import AuditEvent


class AuditEventOut(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "occurred_at",
            "actor_id",
            "actor_name",
            "action",
            "object_type",
            "object_id",
            "model_name",
            "before",
            "after",
            "reason",
            "request_id",
            "source_ip",
        ]
        read_only_fields = fields
