"""The one way to write the audit trail."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from audit import context, ledger
from audit.models import AuditEvent, ChainHead
from audit.triggers import EVENTS, HEAD

# Columns the append statement computes under the head's lock, rather than taking from Python.
_UNDER_LOCK = ("seq", "occurred_at", "canonical", "entry_hash", "prev_hash", "chain_hash")
_PREPARED = "warden_audit_append"
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
) -> AuditEvent:
    """Append one event for a change made by ``actor`` in the current transaction.

    Call it last, inside the ``transaction.atomic`` block of the change: if the change rolls
    back, so does its event (and the sequence number it took), and no change commits without
    one. ``obj`` gives the object type (``app_label.model``) and id; pass them explicitly for
    things that are not rows. Appends are serialised on the chain head's row lock, which is
    held until the transaction ends, so callers lock their own rows first and the ledger last.
    Everything that does not depend on the head is prepared before taking the lock: on
    PostgreSQL the lock, the event and the head's advance are one statement (``_append_sql``),
    since every concurrent writer waits for as long as the lock is held.
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
    event = AuditEvent(**fields, actor_name=getattr(actor, "get_username", lambda: "system")() or "system")
    if connection.vendor == "postgresql":
        _append_postgres(event, fields)
    else:
        _append_orm(event, fields)
    return event


def _append_postgres(event: AuditEvent, fields: dict[str, Any]) -> None:
    """Lock the head, finish and hash the event, insert it and advance the head, in one round
    trip; Python sends the canonical text in the pieces around the two values only the lock
    can give (``ledger.canonical_template``). The statement is prepared once per connection,
    so its parse and plan are not paid under the lock (a pooler in front of the database must
    keep sessions, as PgBouncer's session mode does)."""
    early = settings.AUDIT_EARLY_LOCK_RELEASE
    values = [
        field.get_db_prep_save(getattr(event, field.attname), connection)
        for column, field in _event_columns()
        if column not in _UNDER_LOCK
    ]
    params = [early, *ledger.canonical_template(fields), *values]
    with connection.cursor() as cursor:
        if getattr(connection, "audit_prepared_on", None) is not connection.connection:
            cursor.execute(f"PREPARE {_PREPARED} AS {_append_sql()}")
            connection.audit_prepared_on = connection.connection  # type: ignore[attr-defined]
        cursor.execute(f"EXECUTE {_PREPARED} ({', '.join(['%s'] * len(params))})", params)
        row = cursor.fetchone()
    if row is None:
        raise ChainHead.DoesNotExist("the audit chain head is missing: run migrate")
    (event.pk, event.seq, event.occurred_at, event.canonical, event.entry_hash, event.prev_hash, event.chain_hash) = row
    event._state.adding = False
    event._state.db = connection.alias
    if early:
        _release_early()


def _append_orm(event: AuditEvent, fields: dict[str, Any]) -> None:
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


@cache
def _event_columns() -> list[tuple[str, models.Field]]:
    """The event's columns as the ORM inserts them: all but the key (and ``txid``, not a field)."""
    return [
        (field.column, field) for field in AuditEvent._meta.concrete_fields if field.column and not field.primary_key
    ]


@cache
def _append_sql() -> str:
    """The append, as one statement; ``$1`` says whether to release the head early.

    ``head`` locks the chain head, then reads the clock: the outer query runs over the row the
    inner one has locked (in a flat ``SELECT …, clock_timestamp() … FOR UPDATE`` the scan
    computes the select list before waiting for the lock, so after a wait for a writer that
    rolled back, the time would be one taken before this append held the chain). ``hashed``
    finishes the canonical text with the time (``ledger.sql_time``) and the sequence number, and
    hashes it as ``ledger`` does. The head's update is joined to the insert's output, so the
    insert runs first and the head's trigger (``audit.triggers``) finds the event it checks for. Columns left out take their defaults, as
    with the ORM: ``txid``, which the registry's bypass guard matches at commit, is one.

    Releasing early turns off the wait for the WAL flush at this transaction's commit (see
    ``_release_early``); otherwise ``synchronous_commit`` keeps the session's value.
    """
    given = [column for column, _ in _event_columns() if column not in _UNDER_LOCK]
    quote = connection.ops.quote_name
    return f"""
    WITH head AS (
        SELECT locked.seq + 1 AS seq, locked.chain_hash AS prev_hash,
               GREATEST(clock_timestamp(), locked.occurred_at) AS occurred_at
        FROM (SELECT seq, chain_hash, occurred_at FROM {HEAD} WHERE id = 1 FOR UPDATE) AS locked,
             set_config('synchronous_commit',
                        CASE WHEN $1::boolean THEN 'off' ELSE current_setting('synchronous_commit') END, true)
    ), text AS (
        SELECT head.*, $2::text || {ledger.sql_time("head.occurred_at")} || $3::text || head.seq::text || $4::text
               AS canonical
        FROM head
    ), hashed AS (
        SELECT text.*, encode(sha256(convert_to(text.canonical, 'UTF8')), 'hex') AS entry_hash FROM text
    ), event AS (
        INSERT INTO {EVENTS} ({", ".join(quote(c) for c in (*given, *_UNDER_LOCK))})
        SELECT {", ".join(f"${n}" for n in range(5, 5 + len(given)))}, seq, occurred_at, canonical, entry_hash,
               prev_hash, encode(sha256(decode(prev_hash, 'hex') || decode(entry_hash, 'hex')), 'hex')
        FROM hashed
        RETURNING id, seq, occurred_at, canonical, entry_hash, prev_hash, chain_hash
    )
    UPDATE {HEAD} SET seq = event.seq, chain_hash = event.chain_hash, occurred_at = event.occurred_at
    FROM event WHERE {HEAD}.id = 1
    RETURNING event.id, event.seq, event.occurred_at, event.canonical, event.entry_hash, event.prev_hash,
              event.chain_hash
    """


def _release_early() -> None:
    """Let the chain head go at commit, before the commit is durable, and make the caller wait
    for durability after it: early lock release (Johnson et al., "Aether: a scalable approach
    to logging", VLDB 2010).

    The head's row lock is released when the transaction commits. With a synchronous commit that
    is after the WAL flush, so every writer waits for the one before it to reach the disk, and
    appends run at the disk's flush rate, one at a time. Here the audited transaction commits
    without waiting for the flush (``synchronous_commit`` off, for this transaction only), so
    the next writer takes the head at once, and then, still before ``atomic`` returns to the
    caller, a callback waits for the flush; concurrent writers' flushes share one disk write.

    What it gives up: another session can read the change for the time of one flush (about a
    millisecond) before it is durable. A crash in that window loses the change, its event and
    every event chained after it together (the WAL is written and replayed in order), so the
    trail stays gapless and unforked, and no caller was told it had succeeded. Set
    ``AUDIT_EARLY_LOCK_RELEASE=false`` to hold the head through the flush instead.
    """
    connection.audit_flush_pending = True  # type: ignore[attr-defined]
    # One callback per event: if a savepoint rolls back with an event, the callback registered
    # with it goes too, and a later event's still runs. The first to run does the waiting.
    transaction.on_commit(_wait_for_flush)


def _wait_for_flush() -> None:
    if connection.audit_flush_pending:  # type: ignore[attr-defined]
        connection.audit_flush_pending = False  # type: ignore[attr-defined]
        with connection.cursor() as cursor:
            cursor.execute(_WAIT_FOR_FLUSH)
