from __future__ import annotations

import pytest
from django.db import connection, transaction

from common import statements
from tests.conftest import on_postgres

SQL = "SELECT CAST(%s AS integer) + CAST(%s AS integer)"


def _run(a: int, b: int) -> int:
    with connection.cursor() as cursor:
        statements.execute(cursor, SQL, [a, b])
        return cursor.fetchone()[0]


def _prepared() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return {name for (name,) in cursor.fetchall()}


@pytest.mark.django_db
def test_a_statement_runs_with_its_parameters():
    assert _run(1, 2) == 3 and _run(40, 2) == 42


@pytest.mark.skipif(not on_postgres(), reason="other databases run the text as it is")
@pytest.mark.django_db(transaction=True)
def test_it_is_prepared_once_per_session_and_outlives_a_rollback():
    assert _run(1, 2) == 3
    name = statements._NAMED[SQL][0]
    assert name in _prepared()

    with pytest.raises(RuntimeError), transaction.atomic():
        assert _run(2, 3) == 5
        raise RuntimeError("roll back")
    assert name in _prepared() and _run(4, 5) == 9

    connection.close()  # a new session has nothing prepared: it is prepared there again
    assert _run(5, 6) == 11 and name in _prepared()


@pytest.mark.skipif(not on_postgres(), reason="other databases run the text as it is")
@pytest.mark.django_db(transaction=True)
def test_a_session_that_lost_its_statements_prepares_them_again(developer):
    """``DEALLOCATE`` or ``DISCARD ALL`` (a pooler's reset, an operator) empties the session:
    outside a transaction the statement is prepared again at once; inside one the transaction
    fails, and the next statement finds the session healed. So do the audit trail's appends,
    sent with the ``COMMIT``, and a request's token lookup."""
    from django.db import DatabaseError
    from rest_framework.test import APIClient

    from audit.models import AuditEvent
    from audit.services import audit_record
    from audit.verify import INTACT, verify
    from registry import services

    assert _run(1, 2) == 3
    name = statements._NAMED[SQL][0]
    for lost in ("DEALLOCATE ALL", f"DEALLOCATE {name}"):
        with connection.cursor() as cursor:
            cursor.execute(lost)
        assert _run(2, 3) == 5 and name in _prepared()

    with connection.cursor() as cursor:
        cursor.execute("DISCARD ALL")
    with pytest.raises(DatabaseError, match="does not exist"), transaction.atomic():
        _run(3, 4)
    with transaction.atomic():
        assert _run(4, 5) == 9

    def append(action: str) -> None:
        with transaction.atomic():
            audit_record(actor=developer, action=action, object_type="test.thing", object_id="1")

    append("test.first")  # its statement is prepared, and later sent with the COMMIT
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    with pytest.raises(DatabaseError, match="does not exist"):
        append("test.lost")
    append("test.again")
    assert list(
        AuditEvent.objects.filter(object_type="test.thing").order_by("seq").values_list("action", flat=True)
    ) == [
        "test.first",
        "test.again",
    ]
    assert verify().code == INTACT

    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {services.token_create(actor=developer, name='t')[1]}")
    assert client.get("/api/v1/models/").status_code == 200  # the token's lookup, prepared
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    assert client.get("/api/v1/models/").status_code == 200
