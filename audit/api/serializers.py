from rest_framework import serializers

from audit.models import AuditEvent


class AuditEventOut(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "seq",
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
            "entry_hash",
            "prev_hash",
            "chain_hash",
        ]
        read_only_fields = fields
