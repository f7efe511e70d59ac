"""The one way to write the audit trail."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone

from audit import context, ledger
from audit.models import AuditEvent, ChainHead
from audit.triggers import EVENTS, HEAD

# Lock the head and read the clock in one round trip. The clock is read by the outer query,
# over the row the inner one has locked: in a flat ``SELECT …, clock_timestamp() … FOR UPDATE``
# the scan computes the select list before waiting for the lock, so after a wait for a writer
# that rolled back, the time would be one taken before this append held the chain.
_LOCK_HEAD = f"""
SELECT head.seq, head.chain_hash, GREATEST(clock_timestamp(), head.occurred_at)
FROM (SELECT seq, chain_hash, occurred_at FROM {HEAD} WHERE id = 1 FOR UPDATE) AS head
"""


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
    Everything that does not depend on the head is prepared before taking the lock, and on
    PostgreSQL the lock is held over two statements only (see ``_lock_head`` and ``_append``),
    since every concurrent writer waits for as long as it is held.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record must run inside the transaction of the change it records")
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or obj.pk
    origin = context.current()
    fields: dict[str, Any] = {
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
    actor_name = getattr(actor, "get_username", lambda: "system")() or "system"
    head_seq, prev_hash, occurred_at = _lock_head()
    fields |= {"seq": head_seq + 1, "occurred_at": occurred_at}
    canonical = ledger.canonical(fields)
    entry_hash = ledger.entry_hash(canonical)
    event = AuditEvent(
        **fields,
        actor_name=actor_name,
        canonical=canonical,
        entry_hash=entry_hash,
        prev_hash=prev_hash,
        chain_hash=ledger.chain_hash(prev_hash, entry_hash),
    )
    _append(event)
    return event


def _lock_head() -> tuple[int, str, datetime]:
    """Lock the chain head; return its sequence number and chain hash, and the time of the new
    event: the database's clock read under the lock (the application's on SQLite, whose writers
    are serialised the same way), never earlier than the previous event, so timestamps along
    the chain never decrease."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_LOCK_HEAD)
            row = cursor.fetchone()
        if row is None:
            raise ChainHead.DoesNotExist("the audit chain head is missing: run migrate")
        return row[0], row[1], row[2]
    head = ChainHead.objects.select_for_update().get(pk=1)
    now = timezone.now()
    return head.seq, head.chain_hash, max(now, head.occurred_at) if head.occurred_at else now


def _append(event: AuditEvent) -> None:
    """Insert the event and advance the head to it.

    On PostgreSQL in one statement: the head's update is joined to the insert's output, so the
    insert runs first and the head's trigger (``audit.triggers``) finds the event it checks for.
    Columns the statement leaves out take their defaults, as with the ORM: ``txid``, which the
    registry's bypass guard matches at commit, is one. Values are adapted by the model's own
    fields, so the stored row is the one ``save()`` would write. SQLite keeps the ORM.
    """
    if connection.vendor != "postgresql":
        event.save(force_insert=True)
        ChainHead.objects.filter(pk=1).update(seq=event.seq, chain_hash=event.chain_hash, occurred_at=event.occurred_at)
        return
    values = [field.get_db_prep_save(getattr(event, field.attname), connection) for _, field in _event_columns()]
    with connection.cursor() as cursor:
        cursor.execute(_append_sql(), [*values, event.seq, event.chain_hash, event.occurred_at])
        row = cursor.fetchone()
    if row is None:
        raise ChainHead.DoesNotExist("the audit chain head is missing: run migrate")
    event.pk = row[0]
    event._state.adding = False
    event._state.db = connection.alias


@cache
def _event_columns() -> list[tuple[str, models.Field]]:
    """The event's columns as the ORM inserts them: all but the key (and ``txid``, not a field)."""
    return [
        (field.column, field) for field in AuditEvent._meta.concrete_fields if field.column and not field.primary_key
    ]


@cache
def _append_sql() -> str:
    columns = ", ".join(connection.ops.quote_name(column) for column, _ in _event_columns())
    placeholders = ", ".join(["%s"] * len(_event_columns()))
    return f"""
    WITH event AS (INSERT INTO {EVENTS} ({columns}) VALUES ({placeholders}) RETURNING id)
    UPDATE {HEAD} SET seq = %s, chain_hash = %s, occurred_at = %s
    FROM event WHERE {HEAD}.id = 1
    RETURNING event.id
    """
