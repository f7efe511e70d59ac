from __future__ import annotations

import functools
import io
import select
import time

import psycopg2.extensions
import pytest
from django.contrib.auth.models import Group
from django.db import DatabaseError, DataError, IntegrityError, ProgrammingError, connection, connections, transaction
from django.db.backends.postgresql.psycopg_any import IsolationLevel
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from audit.services import audit_record
from registry.models import RegisteredModel, RiskTier
from registry.services import model_register
from tests.conftest import on_postgres

pytestmark = pytest.mark.skipif(not on_postgres(), reason="Warden's PostgreSQL backend")


def _new_request(wrapper) -> int:
    """What Django does when a request starts and first uses the database; the server's process id."""
    wrapper.close_if_unusable_or_obsolete()
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_a_connection_the_server_closed_is_replaced_before_a_request_uses_it(db):
    wrapper = connections.create_connection("default")
    assert wrapper.settings_dict["CONN_HEALTH_CHECKS"]
    try:
        first = _new_request(wrapper)
        assert _new_request(wrapper) == first  # a healthy connection is kept
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [first])
        deadline = time.monotonic() + 5
        while not select.select([wrapper.connection], [], [], 0.05)[0] and time.monotonic() < deadline:
            pass  # the server's notice that it closed the connection is on its way
        second = _new_request(wrapper)  # no error: the check saw the notice and reconnected
        assert second != first
        assert _new_request(wrapper) == second
    finally:
        wrapper.close()


class Watcher:
    """What the server says of the default connection's session, read on a connection of its own:
    the last message it was sent, and whether it is in a transaction."""

    def __init__(self) -> None:
        self.other = connections.create_connection("default")
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self.pid = cursor.fetchone()[0]

    def __call__(self) -> tuple[str, str]:
        with self.other.cursor() as cursor:
            cursor.execute("SELECT query, state FROM pg_stat_activity WHERE pid = %s", [self.pid])
            return cursor.fetchone()

    def close(self) -> None:
        self.other.close()


@pytest.fixture
def watch(transactional_db):
    watcher = Watcher()
    yield watcher
    watcher.close()


def _scalar(sql: str, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


WAIT = "SELECT pg_logical_emit_message(true, 'warden.audit.durable', '')"


def _events(action: str) -> list[str]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq").values_list("object_id", flat=True))


@pytest.mark.django_db(transaction=True)
def test_a_transaction_sends_begin_with_its_first_statement_and_an_audited_write_its_event_with_commit(
    watch, developer, teams
):
    with transaction.atomic():
        assert _scalar("SELECT 1") == 1
        assert watch() == ("BEGIN; SELECT 1", "idle in transaction")
    first = model_register(actor=developer, name="first", team=teams["credit-risk"])  # prepares the event's statement
    model = model_register(actor=developer, name="fraud-scorer", team=teams["credit-risk"])
    query, state = watch()
    assert query.startswith("EXECUTE warden_") and '"action":"model.registered"' in query
    assert query.endswith(f"; COMMIT; {WAIT}")
    assert state == "idle"
    assert _events("model.registered") == [str(first.pk), str(model.pk)]


@pytest.mark.django_db(transaction=True)
def test_a_transaction_of_events_alone_is_one_message(watch, developer):
    audit_record_now = functools.partial(audit_record, actor=developer, object_type="test.thing")
    with transaction.atomic():
        audit_record_now(action="thing.made", object_id="1")  # prepared here, so sent at once
    with transaction.atomic():
        audit_record_now(action="thing.made", object_id="2", reason="100% sure")
        audit_record_now(action="thing.made", object_id="3")
    query, _ = watch()
    assert query.startswith("BEGIN; EXECUTE warden_") and query.count("EXECUTE warden_") == 2
    assert query.endswith(f"; COMMIT; {WAIT}")
    assert _events("thing.made") == ["1", "2", "3"]
    assert AuditEvent.objects.get(object_id="2").reason == "100% sure"


@pytest.mark.django_db(transaction=True)
def test_an_event_goes_in_front_of_the_next_statement_and_a_savepoint_rolled_back_takes_it(watch, developer):
    record = functools.partial(audit_record, actor=developer, object_type="test.thing", action="thing.made")
    with transaction.atomic():
        record(object_id="1")
    with transaction.atomic():
        record(object_id="2")
        with pytest.raises(ZeroDivisionError), transaction.atomic():
            record(object_id="3")
            raise ZeroDivisionError
        assert _scalar("SELECT count(*) FROM audit_pending WHERE text_a LIKE %s", ['%"object_id":"3"%']) == 0
        record(object_id="4")
        assert _scalar("SELECT %s::text", ["50%"]) == "50%"  # its parameters still fit behind the event's text
        assert watch()[0].startswith("EXECUTE warden_") and watch()[0].endswith("SELECT '50%'::text")
    assert _events("thing.made") == ["1", "2", "4"]


@pytest.mark.django_db(transaction=True)
def test_a_transaction_without_a_statement_sends_nothing(watch):
    _scalar("SELECT 2")
    with transaction.atomic():
        pass
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        raise ZeroDivisionError
    assert watch() == ("SELECT 2", "idle")


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_leaves_nothing_and_drops_the_wait(watch, developer, teams):
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        model_register(actor=developer, name="fraud-scorer", team=teams["credit-risk"])
        raise ZeroDivisionError
    assert watch() == ("ROLLBACK", "idle")
    assert not RegisteredModel.objects.filter(name="fraud-scorer").exists()
    with transaction.atomic():
        _scalar("SELECT 3")
    assert watch() == ("COMMIT", "idle")  # the rolled back transaction's wait went with it


@pytest.mark.django_db(transaction=True)
def test_a_first_statement_that_fails_rolls_the_transaction_back(watch, teams):
    with pytest.raises(DataError), transaction.atomic():
        Group.objects.create(name="quants")
        _scalar("SELECT 1/0")
    with pytest.raises(DataError), transaction.atomic():
        _scalar("SELECT 1/0")
    assert connection.connection.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    assert not Group.objects.filter(name="quants").exists()
    assert _scalar("SELECT 4") == 4


@pytest.mark.django_db(transaction=True)
def test_a_server_side_cursor_or_a_copy_may_come_first(watch, teams):
    """A named cursor's DECLARE and COPY cannot carry the BEGIN: it goes on its own before them."""
    with transaction.atomic():
        assert sorted(Group.objects.filter(name__in=teams).values_list("name", flat=True).iterator(chunk_size=1)) == [
            "credit-risk",
            "pricing",
        ]
        assert watch()[1] == "idle in transaction"
    with transaction.atomic(), connection.cursor() as cursor:
        out = io.StringIO()
        cursor.copy_expert(
            "COPY (SELECT name FROM auth_group WHERE name IN ('credit-risk', 'pricing') ORDER BY name) TO STDOUT", out
        )
        assert watch()[1] == "idle in transaction"
        Group.objects.create(name="quants")
    assert out.getvalue() == "credit-risk\npricing\n"
    assert Group.objects.filter(name="quants").exists()


@pytest.mark.django_db(transaction=True)
def test_a_commit_the_database_refuses_raises_and_leaves_the_connection_usable(watch, developer, teams):
    """The bypass guard refuses at COMMIT: the wait for durability is not run, nothing is kept."""
    model = model_register(actor=developer, name="fraud-scorer", team=teams["credit-risk"])
    with pytest.raises(IntegrityError), transaction.atomic():
        RegisteredModel.objects.filter(pk=model.pk).update(risk_tier=RiskTier.T1)
        audit_record(actor=developer, action="model.viewed", obj=model)  # an event, not of the change's kind
    assert watch()[0].endswith(f"; COMMIT; {WAIT}")
    assert _events("model.viewed") == []
    assert RegisteredModel.objects.get(pk=model.pk).risk_tier == model.risk_tier
    with transaction.atomic():
        assert _scalar("SELECT 5") == 5


@pytest.mark.django_db(transaction=True)
def test_the_configured_isolation_level_is_the_one_begun():
    wrapper = connections.create_connection("default")
    options = {**wrapper.settings_dict["OPTIONS"], "isolation_level": IsolationLevel.SERIALIZABLE}
    wrapper.settings_dict = {**wrapper.settings_dict, "OPTIONS": options}
    try:
        wrapper.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)  # as atomic() begins
        with wrapper.cursor() as cursor:
            cursor.execute("SHOW transaction_isolation")
            assert cursor.fetchone()[0] == "serializable"
        wrapper.rollback()
        wrapper.set_autocommit(True)
    finally:
        wrapper.close()
    with transaction.atomic():
        assert _scalar("SHOW transaction_isolation") == "read committed"


@pytest.mark.django_db(transaction=True)
def test_turning_autocommit_off_still_hands_the_transaction_to_the_driver(watch, teams):
    transaction.set_autocommit(False)
    try:
        Group.objects.create(name="quants")
        assert watch()[0].startswith("INSERT") and watch()[1] == "idle in transaction"  # the driver sent BEGIN
        transaction.commit()
    finally:
        transaction.set_autocommit(True)
    assert Group.objects.filter(name="quants").exists()


@pytest.mark.django_db(transaction=True)
def test_logged_statements_are_the_callers_without_the_begin_sent_with_them(teams):
    with CaptureQueriesContext(connection) as captured, transaction.atomic():
        Group.objects.create(name="quants")
    assert [query["sql"].split(" ", 1)[0] for query in captured] == ["BEGIN", "INSERT", "COMMIT"]


@pytest.mark.django_db(transaction=True)
def test_a_statement_that_never_ran_leaves_the_transaction_to_begin_with_the_next(teams):
    """Refused by the driver (a value it cannot send) or by the parser, the first statement ran
    nothing, BEGIN included: the transaction still begins with the next one and rolls back whole."""
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        with pytest.raises(ProgrammingError), connection.cursor() as cursor:
            cursor.execute("SELECT %s", [object()])
        with pytest.raises(ProgrammingError), connection.cursor() as cursor:
            cursor.execute("SELEC 1")
        Group.objects.create(name="quants")
        raise ZeroDivisionError
    assert not Group.objects.filter(name="quants").exists()


@pytest.mark.django_db(transaction=True)
def test_a_transaction_whose_statement_failed_and_was_caught_is_not_reported_committed(teams):
    """A statement sent with the next one fails with it: here with a savepoint's, inside a
    caller's ``try``. The transaction is then aborted, and its COMMIT raises instead of PostgreSQL
    answering it with a silent rollback."""
    with pytest.raises(DatabaseError, match="not committed"), transaction.atomic():
        Group.objects.create(name="quants")
        connection.send_with_next("SELECT 1/0")
        try:
            with transaction.atomic():
                Group.objects.create(name="desk")
        except DataError:
            pass
    assert not Group.objects.filter(name__in=["quants", "desk"]).exists()
    with transaction.atomic():
        Group.objects.create(name="quants")
    assert Group.objects.filter(name="quants").exists()
