"""The append itself: what ``audit_record`` returns is what it stored, and on PostgreSQL the
event's time is read once this append holds the chain, not while it waits for it."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from audit import context
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
