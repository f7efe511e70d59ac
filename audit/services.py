"""The one way to write the audit trail."""

from __future__ import annotations

from typing import Any

from django.db import models, transaction

from audit import context
from audit.models import AuditEvent


def audit_record(
    *,
    actor: Any,
    action: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str | int = "",
    model_name: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str = "",
) -> AuditEvent:
    """Append one event for a change made by ``actor`` in the current transaction.

    Call it last, inside the ``transaction.atomic`` block of the change: if the change rolls
    back, so does its event, and no change commits without one. ``obj`` gives the object
    type (``app_label.model``) and id; pass them explicitly for things that are not rows.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record must run inside the transaction of the change it records")
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or obj.pk
    origin = context.current()
    event = AuditEvent(
        actor=actor if getattr(actor, "pk", None) else None,
        actor_name=getattr(actor, "get_username", lambda: "system")(),
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        model_name=model_name,
        before=before,
        after=after,
        reason=reason,
        request_id=origin.request_id,
        source_ip=origin.source_ip,
    )
    event.save(force_insert=True)
    return event
