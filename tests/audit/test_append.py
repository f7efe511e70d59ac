"""The append itself: what ``audit_record`` returns is what it stored, and on PostgreSQL the
event's time is read once this append holds the chain, not while it waits for it."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from django.db import connection, transaction

from audit import context, ledger
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
        event = audit_record(actor=developer, action="x.changed", object_type="x", object_id=1)
    holder.join(timeout=10)
    assert event.occurred_at >= released_at[0]


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


@pytest.mark.skipif(connection.vendor != "postgresql", reason="early lock release is PostgreSQL's commit")
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("early", [True, False])
def test_an_audited_change_is_durable_when_its_transaction_returns(developer, settings, early):
    settings.AUDIT_EARLY_LOCK_RELEASE = early
    with transaction.atomic():
        audit_record(actor=developer, action="x.changed", object_type="x", object_id=1)
        assert _synchronous_commit() == ("off" if early else "on")
        written = _wal_insert_position()
    assert _flushed(written)
    assert _synchronous_commit() == "on"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="early lock release is PostgreSQL's commit")
@pytest.mark.django_db(transaction=True)
def test_the_wait_for_durability_survives_a_rolled_back_savepoint(developer, settings):
    settings.AUDIT_EARLY_LOCK_RELEASE = True
    with transaction.atomic():
        with pytest.raises(ValueError), transaction.atomic():
            audit_record(actor=developer, action="x.tried", object_type="x", object_id=1)
            raise ValueError("rolled back")
        audit_record(actor=developer, action="x.changed", object_type="x", object_id=1)
        written = _wal_insert_position()
    assert _flushed(written)
    assert list(AuditEvent.objects.values_list("seq", "action")) == [(1, "x.changed")]
