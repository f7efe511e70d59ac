"""The one way to write the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone

from audit import context, ledger
from audit.models import AuditEvent, ChainHead


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
    back, so does its event (and the sequence number it took), and no change commits without
    one. ``obj`` gives the object type (``app_label.model``) and id; pass them explicitly for
    things that are not rows. Appends are serialised on the chain head's row lock, which is
    held until the transaction ends, so callers lock their own rows first and the ledger last.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record must run inside the transaction of the change it records")
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or obj.pk
    origin = context.current()
    head = ChainHead.objects.select_for_update().get(pk=1)
    fields: dict[str, Any] = {
        "seq": head.seq + 1,
        "occurred_at": _now_after(head.occurred_at),
        "actor_id": actor.pk if getattr(actor, "pk", None) else None,
        "action": action,
        "object_type": object_type,
        "object_id": str(object_id),
        "model_name": model_name,
        "before": ledger.plain(before),
        "after": ledger.plain(after),
        "reason": reason,
        "request_id": origin.request_id,
        "source_ip": origin.source_ip,
    }
    canonical = ledger.canonical(fields)
    entry_hash = ledger.entry_hash(canonical)
    chain_hash = ledger.chain_hash(head.chain_hash, entry_hash)
    event = AuditEvent(
        **fields,
        actor_name=getattr(actor, "get_username", lambda: "system")() or "system",
        canonical=canonical,
        entry_hash=entry_hash,
        prev_hash=head.chain_hash,
        chain_hash=chain_hash,
    )
    event.save(force_insert=True)
    ChainHead.objects.filter(pk=1).update(seq=event.seq, chain_hash=chain_hash, occurred_at=event.occurred_at)
    return event


def _now_after(previous: datetime | None) -> datetime:
    """The database's clock (the application's on SQLite, whose writers are serialised the
    same way), never earlier than the previous event: timestamps along the chain never decrease."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT clock_timestamp()")
            now = cursor.fetchone()[0]
    else:
        now = timezone.now()
    return max(now, previous) if previous else now
