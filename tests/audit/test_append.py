"""The append itself: what ``audit_record`` returns is what it stored; on PostgreSQL the event
is chained when its transaction commits, and its time is read once the append holds the chain,
not while it waits for it."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import psycopg2
import pytest
from django.db import connection, transaction

from audit import context, ledger, triggers
from audit.models import AuditEvent, ChainHead
from audit.services import audit_record


def test_the_returned_event_is_the_stored_row(developer):
    with context.origin("req-1", "10.0.0.7"), transaction.atomic():
        event = audit_record(
            actor=developer,
            action="x.changed",
            object_type="x",
            object_id=7,
            before={"name": "é", "n": 1.5, "tags": ["a", "b"]},
            after={"name": "ü", "nested": {"k": None}},
            reason="why",
        )
    stored = AuditEvent.objects.get(pk=event.pk)
    for field in AuditEvent._meta.concrete_fields:
        assert getattr(event, field.attname) == getattr(stored, field.attname), field.name
    assert (stored.seq, stored.source_ip, stored.request_id) == (1, "10.0.0.7", "req-1")
    assert ChainHead.objects.get().chain_hash == stored.chain_hash
    with pytest.raises(TypeError, match="append-only"):
        event.save()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has no row locks to wait for")
@pytest.mark.django_db(transaction=True)
def test_the_time_is_read_after_the_head_lock_is_granted(developer):
    locked, released_at = threading.Event(), []

    def hold_the_head_then_roll_back() -> None:
        try:
            with transaction.atomic():
                ChainHead.objects.select_for_update().get(pk=1)
                locked.set()
                time.sleep(0.5)
                with connection.cursor() as cursor:
                    cursor.execute("SELECT clock_timestamp()")
                    released_at.append(cursor.fetchone()[0])
                transaction.set_rollback(True)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_head_then_roll_back)
    holder.start()
    assert locked.wait(timeout=10)
    with transaction.atomic():
        audit_record(actor=developer, action="x.changed", object_type="x", object_id=1)
    holder.join(timeout=10)
    assert AuditEvent.objects.get(action="x.changed").occurred_at >= released_at[0]


def _head_is_free() -> bool:
    """Whether another session can lock the chain head right now."""
    other = psycopg2.connect(**connection.get_connection_params())
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT 1 FROM audit_chainhead WHERE id = 1 FOR UPDATE SKIP LOCKED")
            return cursor.fetchone() is not None
    finally:
        other.close()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite appends at once, under its database lock")
@pytest.mark.django_db(transaction=True)
def test_events_are_chained_when_their_transaction_commits_and_hold_the_head_only_then(developer):
    with transaction.atomic():
        audit_record(actor=developer, action="x.first", object_type="x", object_id=1)
        audit_record(actor=developer, action="x.second", object_type="x", object_id=1)
        assert not AuditEvent.objects.exists()
        assert _head_is_free()
    events = list(AuditEvent.objects.order_by("seq"))
    assert [(e.seq, e.action) for e in events] == [(1, "x.first"), (2, "x.second")]
    assert events[1].prev_hash == events[0].chain_hash
    assert events[1].canonical == ledger.canonical(
        {name: getattr(events[1], name) for name in ledger.HASHED_FIELDS} | {"actor_id": developer.pk}
    )
    assert ChainHead.objects.get().chain_hash == events[1].chain_hash
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM audit_pending")
        assert cursor.fetchone() == (0,)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the pending table is PostgreSQL's")
def test_the_pending_table_holds_what_the_writer_gives_an_event_with_the_same_types(db):
    def types(table: str) -> dict[str, tuple]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT column_name, data_type, character_maximum_length FROM information_schema.columns "
                "WHERE table_name = %s",
                [table],
            )
            return {name: rest for name, *rest in cursor.fetchall()}

    event, pending = types("audit_auditevent"), types("audit_pending")
    assert {name: pending[name] for name in triggers.GIVEN} == {name: event[name] for name in triggers.GIVEN}
    given = {name for name in event if name not in ("id", "txid", "canonical", "entry_hash", "prev_hash", "chain_hash")}
    assert given - {"seq", "occurred_at"} == set(triggers.GIVEN)


def test_the_template_pieces_around_time_and_sequence_make_the_canonical_text():
    fields = {
        "action": "x.changed",
        "actor_id": None,
        "after": {"n": 1e-7, "s": 'quote " and \\ and é'},
        "before": [1, 2.5, None],
        "model_name": "",
        "object_id": "7",
        "object_type": "x",
        "reason": "line\nbreak",
        "request_id": "",
        "source_ip": "::1",
    }
    at = datetime(2026, 11, 27, 9, 5, 1, 7, tzinfo=UTC)
    a, b, c = ledger.canonical_template(fields)
    whole = ledger.canonical(fields | {"occurred_at": at, "seq": 123})
    assert a + "2026-11-27T09:05:01.000007Z" + b + "123" + c == whole


def _flushed(lsn: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", [lsn])
        return cursor.fetchone()[0]


def _synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


def _wal_insert_position() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_insert_lsn()")
        return cursor.fetchone()[0]


def _looked_up_once() -> None:
    """Run the checks once before the transaction: the first lookup of a function in the
    catalogue may prune a catalogue page (dead rows left by migrations' ``CREATE OR REPLACE``),
    which writes WAL that nothing waits to flush, and would look like the commit's own."""
    _flushed(_wal_insert_position())
    _synchronous_commit()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="early lock release is PostgreSQL's commit")
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("early", [True, False])
@pytest.mark.parametrize("now", [True, False])
def test_an_audited_change_is_durable_when_its_transaction_returns(developer, settings, early, now):
    settings.AUDIT_EARLY_LOCK_RELEASE = early
    _looked_up_once()
    with transaction.atomic():
        audit_record(actor=developer, action="x.changed", object_type="x", object_id=1, now=now)
        assert _synchronous_commit() == ("off" if early and now else "on")  # else set at commit
        written = _wal_insert_position()  # the commit's record comes after this
    assert _flushed(written)  # and so is flushed too (others' WAL since may not be yet)
    assert _synchronous_commit() == "on"
    assert list(AuditEvent.objects.values_list("seq", "action")) == [(1, "x.changed")]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="early lock release is PostgreSQL's commit")
@pytest.mark.django_db(transaction=True)
def test_the_wait_for_durability_survives_a_rolled_back_savepoint(developer, settings):
    settings.AUDIT_EARLY_LOCK_RELEASE = True
    _looked_up_once()
    with transaction.atomic():
        with pytest.raises(ValueError), transaction.atomic():
            audit_record(actor=developer, action="x.tried", object_type="x", object_id=1)
            raise ValueError("rolled back")
        audit_record(actor=developer, action="x.changed", object_type="x", object_id=1)
        written = _wal_insert_position()
    assert _flushed(written)
    assert list(AuditEvent.objects.values_list("seq", "action")) == [(1, "x.changed")]
