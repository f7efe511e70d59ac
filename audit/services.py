"""The one way to write the audit trail."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from audit import context, ledger
from audit.models import AuditEvent, ChainHead
from audit.triggers import GIVEN, PENDING
from common import statements

# Prepared once per connection (``common.statements``): the pending insert and the direct append
# (``audit.triggers``). The documents' parameters are typed in the text, so a statement prepared
# when they were jsonb (before migration audit.0006) is not the one executed now.
_SLOTS = ", ".join(["%s"] * 4 + ["%s::json" if name in ("before", "after") else "%s" for name in GIVEN])
_PENDING_SQL = f"INSERT INTO {PENDING} (early, text_a, text_b, text_c, {', '.join(GIVEN)}) VALUES ({_SLOTS})"
_CHAIN_SQL = (
    f"SELECT id, seq, occurred_at, canonical, entry_hash, prev_hash, chain_hash FROM warden_audit_chain({_SLOTS})"
)
# Run after the commit, in a transaction of its own that writes one small WAL record (an empty
# logical-decoding message): such a transaction's commit waits for its flush, and the WAL is
# flushed in order, so everything committed before it is durable too. (A transaction that only
# takes an id writes nothing, and PostgreSQL does not flush for it.)
_WAIT_FOR_FLUSH = "SELECT pg_logical_emit_message(true, 'warden.audit.durable', '')"


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
    now: bool = False,
) -> AuditEvent | None:
    """Append one event for a change made by ``actor`` in the current transaction.

    Call it last, inside the ``transaction.atomic`` block of the change: if the change rolls
    back, so does its event (and the sequence number it took), and no change commits without
    one. ``obj`` gives the object type (``app_label.model``) and id; pass them explicitly for
    things that are not rows. Appends are serialised on the chain head's row lock, which is
    held until the transaction ends, so callers lock their own rows first and the ledger last.
    On PostgreSQL the event is chained when the transaction commits (``audit.triggers``) and
    nothing is returned; its pending row travels with the transaction's next statement or its
    ``COMMIT`` (``statements.send_with_next``), which raises its error if it has one. With
    ``now=True`` (or ``AUDIT_CHAIN_AT_COMMIT=false``) it is chained at once, holding the head
    from then on, and the stored event is returned, as on SQLite.
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
    if connection.vendor != "postgresql":
        return _append_orm(AuditEvent(**fields, actor_name=actor_name), fields)
    return _append_postgres(fields, actor_name, now=now or not settings.AUDIT_CHAIN_AT_COMMIT)


def _append_postgres(fields: dict[str, Any], actor_name: str, *, now: bool) -> AuditEvent | None:
    """Hand the event to ``warden_audit_chain``: at commit, through the pending table, or now.
    Python sends the canonical text in the pieces around the two values only the lock can give
    (``ledger.canonical_template``), and the columns as the database takes them. Both statements
    are prepared once per connection (a pooler in front of the database must keep sessions, as
    PgBouncer's session mode does)."""
    early = settings.AUDIT_EARLY_LOCK_RELEASE
    given = fields | {"actor_name": actor_name}
    for document in ("before", "after"):  # as the canonical text holds them (``audit.models.Document``)
        given[document] = None if given[document] is None else ledger.encode(given[document])
    params = [early, *ledger.canonical_template(fields), *(given[name] for name in GIVEN)]
    with connection.cursor() as cursor:
        if now:
            statements.execute(cursor, _CHAIN_SQL, params)
            row = cursor.fetchone()
        elif not statements.send_with_next(cursor, _PENDING_SQL, params):  # with the COMMIT, usually
            statements.execute(cursor, _PENDING_SQL, params)
    if early:
        _release_early()
    if not now:
        return None
    if row is None:
        raise ChainHead.DoesNotExist("the audit chain head is missing: run migrate")
    event = AuditEvent(**fields, actor_name=actor_name)
    (event.pk, event.seq, event.occurred_at, event.canonical, event.entry_hash, event.prev_hash, event.chain_hash) = row
    event._state.adding = False
    event._state.db = connection.alias
    return event


def _append_orm(event: AuditEvent, fields: dict[str, Any]) -> AuditEvent:
    """SQLite, whose writers are serialised on the database: the same steps through the ORM,
    with the application's clock, never earlier than the previous event's."""
    head = ChainHead.objects.select_for_update().get(pk=1)
    now = timezone.now()
    event.seq = head.seq + 1
    event.occurred_at = max(now, head.occurred_at) if head.occurred_at else now
    event.canonical = ledger.canonical(fields | {"seq": event.seq, "occurred_at": event.occurred_at})
    event.entry_hash = ledger.entry_hash(event.canonical)
    event.prev_hash = head.chain_hash
    event.chain_hash = ledger.chain_hash(event.prev_hash, event.entry_hash)
    event.save(force_insert=True)
    ChainHead.objects.filter(pk=1).update(seq=event.seq, chain_hash=event.chain_hash, occurred_at=event.occurred_at)
    return event


def _release_early() -> None:
    """Let the chain head go at commit, before the commit is durable, and make the caller wait
    for durability after it: early lock release (Johnson et al., "Aether: a scalable approach
    to logging", VLDB 2010).

    The head's row lock is released when the transaction commits. With a synchronous commit that
    is after the WAL flush, so every writer waits for the one before it to reach the disk, and
    appends run at the disk's flush rate, one at a time. Here the audited transaction commits
    without waiting for the flush (``synchronous_commit`` off, for this transaction only), so
    the next writer takes the head at once, and then, still before ``atomic`` returns to the
    caller, waits for the flush; concurrent writers' flushes share one disk write. The wait is a
    statement sent in the same message as the ``COMMIT`` (``common.postgresql``), or, when the
    driver holds the transaction itself, a callback after it.

    What it gives up: another session can read the change for the time of one flush (about a
    millisecond) before it is durable. A crash in that window loses the change, its event and
    every event chained after it together (the WAL is written and replayed in order), so the
    trail stays gapless and unforked, and no caller was told it had succeeded. Set
    ``AUDIT_EARLY_LOCK_RELEASE=false`` to hold the head through the flush instead.
    """
    sender = getattr(connection, "send_after_commit", None)
    if sender is not None and sender(_WAIT_FOR_FLUSH):
        return
    connection.audit_flush_pending = True  # type: ignore[attr-defined]
    # One callback per event: if a savepoint rolls back with an event, the callback registered
    # with it goes too, and a later event's still runs. The first to run does the waiting.
    transaction.on_commit(_wait_for_flush)


def _wait_for_flush() -> None:
    if connection.audit_flush_pending:  # type: ignore[attr-defined]
        connection.audit_flush_pending = False  # type: ignore[attr-defined]
        # On the driver's connection, in autocommit after the commit: a statement of its own,
        # without the ORM's cursor wrapping, for one round trip per audited write.
        with connection.connection.cursor() as cursor:
            cursor.execute(_WAIT_FOR_FLUSH)
