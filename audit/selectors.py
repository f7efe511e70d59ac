from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from audit import policies
from audit.models import AuditEvent


def events_for(user: Any) -> QuerySet[AuditEvent]:
    return policies.visible_events(user, AuditEvent.objects.select_related(None))


def model_history(model_name: str) -> QuerySet[AuditEvent]:
    """Every event about one model. The caller has checked the user may see the model."""
    return AuditEvent.objects.filter(model_name=model_name)
